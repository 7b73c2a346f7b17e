//! A webhook receiver on a loopback port, for alert notifications: it answers `200` and records
//! every request; [`WebhookReceiver::stop`] closes its port (connections are refused) and
//! [`WebhookReceiver::start_again`] opens the same port.

use hmac::{KeyInit, Mac};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// One request the receiver got.
#[derive(Clone, Debug)]
pub struct Received {
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Received {
    /// The body as JSON (panics when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("a json body")
    }

    /// A header's value as text (panics when it is missing).
    pub fn header(&self, name: &str) -> String {
        self.headers[name]
            .to_str()
            .expect("a text header")
            .to_string()
    }

    /// Whether `X-Beacon-Signature` is `sha256=` and the hex HMAC-SHA-256 of the body keyed with
    /// `secret`'s characters.
    pub fn signed_with(&self, secret: &str) -> bool {
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("a key");
        mac.update(&self.body);
        let want = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        self.headers
            .get("x-beacon-signature")
            .and_then(|v| v.to_str().ok())
            == Some(want.as_str())
    }
}

/// See the module documentation.
pub struct WebhookReceiver {
    pub addr: SocketAddr,
    got: Arc<Mutex<Vec<Received>>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl WebhookReceiver {
    /// Listens on `127.0.0.1:0`.
    pub async fn start() -> WebhookReceiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let mut r = WebhookReceiver {
            addr: listener.local_addr().expect("a local address"),
            got: Arc::default(),
            task: None,
        };
        r.serve(listener);
        r
    }

    fn serve(&mut self, listener: tokio::net::TcpListener) {
        let got = self.got.clone();
        let app = axum::Router::new().fallback(
            move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let got = got.clone();
                async move {
                    got.lock().expect("receiver lock").push(Received {
                        headers,
                        body: body.to_vec(),
                    });
                    "ok"
                }
            },
        );
        self.task = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
    }

    /// The URL a rule posts to; its path plays an incoming webhook's secret (`s3cr3t`).
    pub fn url(&self) -> String {
        format!("http://{}/hooks/s3cr3t-hook-path", self.addr)
    }

    /// Closes the port: connections are refused until [`WebhookReceiver::start_again`].
    pub async fn stop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
            let _ = t.await;
        }
    }

    /// Listens on the same port again.
    pub async fn start_again(&mut self) {
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .expect("bind the same port again");
        self.serve(listener);
    }

    /// Requests received so far.
    pub fn count(&self) -> usize {
        self.got.lock().expect("receiver lock").len()
    }

    pub fn all(&self) -> Vec<Received> {
        self.got.lock().expect("receiver lock").clone()
    }

    /// Waits (bounded, see [`crate::wait_until`]) until `n` requests arrived; returns them all.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        let got = self.got.clone();
        crate::wait_until(&format!("{n} webhook requests"), move || {
            got.lock().expect("receiver lock").len() >= n
        })
        .await;
        self.all()
    }
}
