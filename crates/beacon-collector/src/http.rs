//! The HTTP server: a hyper accept loop that bounds what one client can hold.
//!
//! - **Connections** are capped ([`Limits::max_connections`]). Beyond the cap a connection is
//!   answered `503` with the JSON `ErrorBody` and `Retry-After` (over TLS too, after the handshake)
//!   and closed; at most [`REFUSAL_SLOTS`] such answers are in progress at once, each for at most
//!   [`REFUSAL_DEADLINE`], and a connection beyond those is closed at once. File descriptors thus
//!   stay within the cap plus the refusal slots, which `server::start` keeps below the open-files
//!   limit.
//! - **Time**: a request head must arrive within `header_read_timeout` (hyper's HTTP/1.1 timer, which
//!   also runs while a keep-alive connection waits for its next request), a TLS handshake too; a
//!   connection that starts no request within it, or has none in flight for `idle_timeout` after
//!   that, is closed gracefully (HTTP/2: GOAWAY) and dropped [`CLOSE_GRACE`] later; a write the
//!   client does not take for `write_timeout` fails the connection. Request bodies have their own
//!   deadline and size checks in [`crate::guards`].
//! - **Shutdown**: [`Server::shutdown`] stops accepting, asks every connection to finish
//!   (in-flight requests complete, keep-alive ends), and after the grace period drops what is left.

use axum::Router;
use axum::body::Body;
use beacon_wire::admin::ErrorBody;
use bytes::Bytes;
use http_body::Frame;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// Open connections: `beacon_connections_open`.
pub const CONNECTIONS_OPEN: &str = "beacon_connections_open";
/// Connections refused over the cap: `beacon_connections_refused_total{how="503"|"closed"}`.
pub const CONNECTIONS_REFUSED: &str = "beacon_connections_refused_total";
/// Connections the server cut: `beacon_connections_cut_total{reason}` with `header_timeout`,
/// `handshake_timeout`, `idle` and `write_timeout`.
pub const CONNECTIONS_CUT: &str = "beacon_connections_cut_total";

/// Over-cap connections being answered at once.
pub const REFUSAL_SLOTS: usize = crate::host::REFUSAL_SLOTS as usize;
/// Longest an over-cap connection is kept to read its request and send the `503`.
pub const REFUSAL_DEADLINE: Duration = Duration::from_secs(2);
/// After an idle connection is asked to close, how long it has before it is dropped.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// Request heads (and HTTP/1.1 read buffers) are held to this size.
const MAX_BUF: usize = 64 * 1024;

/// What one client may hold, and for how long.
#[derive(Debug, Clone)]
pub struct Limits {
    pub header_read_timeout: Duration,
    pub idle_timeout: Duration,
    pub write_timeout: Duration,
    pub max_connections: usize,
    pub http2_max_streams: u32,
}

/// A serving accept loop.
pub struct Server {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Starts serving `app` on `listener`; over TLS when `tls` is given (ALPN `h2`, `http/1.1`).
    pub fn spawn(
        listener: TcpListener,
        tls: Option<TlsAcceptor>,
        app: Router,
        limits: Limits,
        grace: Duration,
    ) -> Server {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, tls, app, limits, stopped, grace));
        Server { stop, task }
    }

    /// Stops accepting and lets connections finish; they are dropped after the grace period.
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }

    /// Resolves when the loop has stopped and every connection is gone.
    pub async fn wait(self) -> io::Result<()> {
        self.task.await.map_err(io::Error::other)
    }
}

/// Loads a PEM certificate chain and private key into a TLS acceptor offering HTTP/2 and HTTP/1.1.
pub fn tls_acceptor(cert: &std::path::Path, key: &std::path::Path) -> io::Result<TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let bad = |what: &str, path: &std::path::Path, e: rustls::pki_types::pem::Error| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what} {}: {e}", path.display()),
        )
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad("certificate", cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("certificate", cert, e))?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| bad("key", key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn builder(limits: &Limits) -> Builder<TokioExecutor> {
    let mut b = Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(MAX_BUF);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.http2_max_streams)
        .max_header_list_size(MAX_BUF as u32);
    b
}

fn refusal_builder(limits: &Limits) -> Builder<TokioExecutor> {
    let mut b = Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout.min(REFUSAL_DEADLINE))
        .keep_alive(false)
        .max_buf_size(MAX_BUF);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(1)
        .max_header_list_size(MAX_BUF as u32);
    b
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let refusal_slots = Arc::new(Semaphore::new(REFUSAL_SLOTS));
    let (finish, finishing) = watch::channel(false);
    let serving = Arc::new(builder(&limits));
    let refusing = Arc::new(refusal_builder(&limits));
    let limits = Arc::new(limits);
    let mut tasks = JoinSet::new();
    let mut last_accept_warning: Option<Instant> = None;
    let mut last_cap_warning: Option<Instant> = None;
    loop {
        while tasks.try_join_next().is_some() {}
        let accepted = tokio::select! {
            _ = until_set(&mut stop) => break,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok((stream, peer)) => (stream, peer),
            Err(e) => {
                if !matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::Interrupted
                ) {
                    // Out of descriptors (EMFILE/ENFILE) or memory: wait instead of spinning.
                    if once_per_minute(&mut last_accept_warning) {
                        tracing::warn!(error = %e, "cannot accept connections; retrying");
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        if let Ok(permit) = slots.clone().try_acquire_owned() {
            let (tls, app, builder, limits, finishing) = (
                tls.clone(),
                app.clone(),
                serving.clone(),
                limits.clone(),
                finishing.clone(),
            );
            tasks.spawn(async move {
                let _open = OpenConnection::new(permit);
                serve(stream, peer, tls, app, &builder, &limits, finishing).await;
            });
            continue;
        }
        if once_per_minute(&mut last_cap_warning) {
            tracing::warn!(
                max_connections = limits.max_connections,
                "connection cap reached; refusing new connections with 503"
            );
        }
        match refusal_slots.clone().try_acquire_owned() {
            Ok(permit) => {
                metrics::counter!(CONNECTIONS_REFUSED, "how" => "503").increment(1);
                let (tls, builder, limits) = (tls.clone(), refusing.clone(), limits.clone());
                tasks.spawn(async move {
                    let _ = tokio::time::timeout(
                        REFUSAL_DEADLINE,
                        refuse(stream, tls, &builder, &limits),
                    )
                    .await;
                    drop(permit);
                });
            }
            Err(_) => {
                metrics::counter!(CONNECTIONS_REFUSED, "how" => "closed").increment(1);
                drop(stream);
            }
        }
    }
    drop(listener);
    let _ = finish.send(true);
    let drained =
        tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tracing::warn!(
            connections = tasks.len(),
            "connections still open after the grace period are dropped"
        );
        tasks.shutdown().await;
    }
}

/// One served connection: its slot and its place in `beacon_connections_open`, also when its task
/// is dropped at the end of the grace period.
struct OpenConnection {
    _slot: tokio::sync::OwnedSemaphorePermit,
}

impl OpenConnection {
    fn new(slot: tokio::sync::OwnedSemaphorePermit) -> Self {
        metrics::gauge!(CONNECTIONS_OPEN).increment(1.0);
        OpenConnection { _slot: slot }
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        metrics::gauge!(CONNECTIONS_OPEN).decrement(1.0);
    }
}

/// Resolves once the flag is set (or its sender is gone).
async fn until_set(flag: &mut watch::Receiver<bool>) {
    let _ = flag.wait_for(|set| *set).await;
}

fn once_per_minute(last: &mut Option<Instant>) -> bool {
    let now = Instant::now();
    if last.is_some_and(|t| now.duration_since(t) < Duration::from_secs(60)) {
        return false;
    }
    *last = Some(now);
    true
}

/// TLS handshake within the header-read timeout, then the stream.
async fn handshake(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    limits: &Limits,
    within: Duration,
) -> Option<TokioIo<TimedIo<Stream>>> {
    let stream = match tls {
        None => Stream::Plain(stream),
        Some(acceptor) => match tokio::time::timeout(within, acceptor.accept(stream)).await {
            Ok(Ok(s)) => Stream::Tls(Box::new(s)),
            Ok(Err(_)) => return None,
            Err(_) => {
                metrics::counter!(CONNECTIONS_CUT, "reason" => "handshake_timeout").increment(1);
                return None;
            }
        },
    };
    Some(TokioIo::new(TimedIo::new(stream, limits.write_timeout)))
}

async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<TlsAcceptor>,
    app: Router,
    builder: &Builder<TokioExecutor>,
    limits: &Limits,
    mut finishing: watch::Receiver<bool>,
) {
    let started = Instant::now();
    let Some(io) = handshake(stream, tls, limits, limits.header_read_timeout).await else {
        return;
    };
    let activity = Arc::new(Activity::new(started));
    let service = ConnService {
        app,
        peer,
        activity: activity.clone(),
    };
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let finished = tokio::select! {
        r = conn.as_mut() => Some(r),
        _ = activity.idle(limits.header_read_timeout, limits.idle_timeout) => {
            metrics::counter!(CONNECTIONS_CUT, "reason" => "idle").increment(1);
            conn.as_mut().graceful_shutdown();
            tokio::time::timeout(CLOSE_GRACE, conn.as_mut()).await.ok()
        }
        // Server shutdown: in-flight requests finish; the accept loop drops us after its grace period.
        _ = until_set(&mut finishing) => {
            conn.as_mut().graceful_shutdown();
            Some(conn.as_mut().await)
        }
    };
    if let Some(Err(e)) = finished {
        count_cut(&*e);
    }
}

/// Counts the cuts hyper and [`TimedIo`] report as errors.
fn count_cut(e: &(dyn std::error::Error + 'static)) {
    let mut source = Some(e);
    while let Some(err) = source {
        if let Some(h) = err.downcast_ref::<hyper::Error>()
            && h.is_timeout()
        {
            metrics::counter!(CONNECTIONS_CUT, "reason" => "header_timeout").increment(1);
            return;
        }
        if let Some(io) = err.downcast_ref::<io::Error>()
            && io.kind() == io::ErrorKind::TimedOut
        {
            metrics::counter!(CONNECTIONS_CUT, "reason" => "write_timeout").increment(1);
            return;
        }
        source = err.source();
    }
}

/// Reads one request (within the deadline) and answers `503` with `Connection: close`.
async fn refuse(
    stream: TcpStream,
    tls: Option<TlsAcceptor>,
    builder: &Builder<TokioExecutor>,
    limits: &Limits,
) {
    let Some(io) = handshake(stream, tls, limits, REFUSAL_DEADLINE).await else {
        return;
    };
    let service = hyper::service::service_fn(|_req: Request<Incoming>| async {
        Ok::<_, Infallible>(busy_response())
    });
    let _ = builder.serve_connection(io, service).await;
}

/// `503`, the JSON `ErrorBody`, `Retry-After`.
fn busy_response() -> Response<Body> {
    let body = ErrorBody {
        error: "unavailable".into(),
        field: None,
        message: "the collector is at its connection limit; retry later".into(),
    };
    let mut resp = Response::new(Body::from(
        serde_json::to_vec(&body).expect("ErrorBody serializes"),
    ));
    *resp.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::RETRY_AFTER,
        header::HeaderValue::from(crate::error::RETRY_AFTER_SECS),
    );
    resp
}

/// Requests in flight on one connection, and since when it has had none.
struct Activity {
    in_flight: AtomicUsize,
    served: AtomicBool,
    idle_since: Mutex<Instant>,
    changed: Notify,
}

impl Activity {
    fn new(now: Instant) -> Self {
        Activity {
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            idle_since: Mutex::new(now),
            changed: Notify::new(),
        }
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.served.store(true, Ordering::SeqCst);
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_one();
        Busy(self.clone())
    }

    /// Resolves once the connection has had no request in flight for `idle` (for `first` before
    /// its first request).
    async fn idle(&self, first: Duration, idle: Duration) {
        loop {
            if self.in_flight.load(Ordering::SeqCst) == 0 {
                let limit = if self.served.load(Ordering::SeqCst) {
                    idle
                } else {
                    first
                };
                let deadline = *self.idle_since.lock().expect("not poisoned") + limit;
                if Instant::now() >= deadline {
                    return;
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => {}
                    _ = self.changed.notified() => {}
                }
            } else {
                self.changed.notified().await;
            }
        }
    }
}

/// One request in flight, until its response body is done with.
struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        // The new idle start is visible before the count says idle.
        *self.0.idle_since.lock().expect("not poisoned") = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_one();
    }
}

/// The router as a hyper service that counts requests in flight.
#[derive(Clone)]
struct ConnService {
    app: Router,
    /// The client's address, for handlers that take `ConnectInfo<SocketAddr>`.
    peer: SocketAddr,
    activity: Arc<Activity>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<TrackedBody>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn call(&self, mut req: Request<Incoming>) -> Self::Future {
        use tower::ServiceExt;
        req.extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer));
        let busy = self.activity.begin();
        let app = self.app.clone();
        Box::pin(async move {
            let resp = app.oneshot(req).await?;
            Ok(resp.map(|body| TrackedBody { body, _busy: busy }))
        })
    }
}

/// A response body that keeps its request counted as in flight until it is sent or dropped.
struct TrackedBody {
    body: Body,
    _busy: Busy,
}

impl http_body::Body for TrackedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// A plain or TLS connection.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// A stream whose writes fail with `TimedOut` once the peer has taken no byte for `limit`.
struct TimedIo<S> {
    inner: S,
    limit: Duration,
    /// Running while a write is blocked.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> TimedIo<S> {
    fn new(inner: S, limit: Duration) -> Self {
        TimedIo {
            inner,
            limit,
            stalled: None,
        }
    }

    /// After the inner write returned `Pending`: `Ready(Err)` once the stall has lasted too long.
    fn poll_stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let limit = self.limit;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        ready!(sleep.as_mut().poll(cx));
        Poll::Ready(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client took no data within the write timeout",
        ))
    }

    fn on_write<T>(&mut self, cx: &mut Context<'_>, r: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        match r {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.poll_stall(cx).map(Err),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for TimedIo<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for TimedIo<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.on_write(cx, r)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.on_write(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_flush(cx);
        this.on_write(cx, r)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_shutdown(cx);
        this.on_write(cx, r)
    }
}
