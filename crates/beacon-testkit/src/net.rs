//! Loopback servers that stand between a client and a collector: a TCP forwarder and a CONNECT proxy
//! that count the connections they see, and a TLS server that answers 500 or nothing.

use crate::TestTls;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A loopback TCP forwarder to `target` that counts the connections it accepts.
pub struct Forwarder {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
    /// The runtime it runs on, when started from plain (non-async) code.
    rt: Option<tokio::runtime::Runtime>,
}

impl Forwarder {
    /// [`forwarder`] from plain (non-async) code, on a runtime of its own.
    pub fn start_blocking(target: SocketAddr) -> Forwarder {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("forwarder runtime");
        let mut fwd = rt.block_on(forwarder(target));
        fwd.rt = Some(rt);
        fwd
    }

    pub fn count(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }

    /// `https://localhost:PORT`
    pub fn url(&self) -> String {
        format!("https://localhost:{}", self.addr.port())
    }

    pub fn host_port(&self) -> String {
        format!("localhost:{}", self.addr.port())
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.task.abort();
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// Accepts on a fresh loopback port; `handle` serves each connection on a task of its own, with the
/// counter (incremented for every connection first when `count_every` is set).
async fn serve<F, Fut>(count_every: bool, handle: F) -> Forwarder
where
    F: Fn(TcpStream, Arc<AtomicU64>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicU64::new(0));
    let count = connections.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            if count_every {
                count.fetch_add(1, Ordering::SeqCst);
            }
            tokio::spawn(handle(stream, count.clone()));
        }
    });
    Forwarder {
        addr,
        connections,
        task,
        rt: None,
    }
}

/// Reads up to the end of a request head (at most `limit` bytes); `None` when the peer stops first.
async fn read_head(stream: &mut (impl AsyncRead + Unpin), limit: usize) -> Option<Vec<u8>> {
    let mut buf = [0u8; 8192];
    let mut head = Vec::new();
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < limit {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    Some(head)
}

/// A loopback TCP forwarder to `target` that counts the connections it accepts.
pub async fn forwarder(target: SocketAddr) -> Forwarder {
    serve(true, move |mut inbound, _| async move {
        if let Ok(mut outbound) = TcpStream::connect(target).await {
            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
        }
    })
    .await
}

/// How a [`fault_server`] misbehaves.
#[derive(Clone, Copy)]
pub enum Fault {
    /// Answers every request `500 Internal Server Error`.
    Status500,
    /// Completes the TLS handshake, reads the request, never answers.
    Silent,
}

/// A TLS server on loopback that misbehaves; counts connections.
pub async fn fault_server(tls: &TestTls, fault: Fault) -> Forwarder {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.clone());
    serve(true, move |tcp, _| {
        let acceptor = acceptor.clone();
        async move {
            let Ok(mut stream) = acceptor.accept(tcp).await else {
                return;
            };
            if read_head(&mut stream, 65536).await.is_none() {
                return;
            }
            match fault {
                Fault::Status500 => {
                    let _ = stream
                        .write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                    let _ = stream.shutdown().await;
                }
                Fault::Silent => {
                    // Hold the connection open (reading whatever else comes) until the client gives up.
                    let mut buf = [0u8; 8192];
                    while let Ok(1..) = stream.read(&mut buf).await {}
                }
            }
        }
    })
    .await
}

/// A CONNECT proxy on loopback (tunnels to loopback targets only); counts the tunnels it opened.
pub async fn connect_proxy() -> Forwarder {
    serve(false, |mut inbound, count| async move {
        let Some(head) = read_head(&mut inbound, 8192).await else {
            return;
        };
        let head = String::from_utf8_lossy(&head).into_owned();
        let target = head
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("CONNECT "))
            .and_then(|l| l.split_whitespace().next())
            .map(str::to_string);
        let Some(target) = target else {
            let _ = inbound
                .write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n")
                .await;
            return;
        };
        let port = target.rsplit(':').next().unwrap_or("443");
        // Loopback only, whatever the name asked for.
        let Ok(mut outbound) = TcpStream::connect(format!("127.0.0.1:{port}")).await else {
            let _ = inbound.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
            return;
        };
        count.fetch_add(1, Ordering::SeqCst);
        if inbound
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await
            .is_ok()
        {
            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
        }
    })
    .await
}
