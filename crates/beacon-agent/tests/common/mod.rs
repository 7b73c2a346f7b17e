//! Test helpers: a test CA, an in-process collector over TLS on loopback with a real SQLite file, and
//! small loopback servers that stand between the agent and the collector — a TCP forwarder and a
//! CONNECT proxy that count the connections they see, and a TLS server that answers 500 or nothing.
#![allow(dead_code)]

use beacon_agent::{BoxError, Bulletin, Config, HostFacts};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub const ADMIN_TOKEN: &str = "agent-test-admin-token-0123456789abcdef";

/// A CA and a certificate it signed for `localhost` and `127.0.0.1`, as PEM files.
pub struct TestTls {
    pub dir: tempfile::TempDir,
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub server: Arc<rustls::ServerConfig>,
}

pub fn test_tls() -> TestTls {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "beacon agent test ca");
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    let cert_file = dir.path().join("cert.pem");
    let key_file = dir.path().join("key.pem");
    std::fs::write(&ca_file, ca_cert.pem()).unwrap();
    std::fs::write(&cert_file, leaf.pem()).unwrap();
    std::fs::write(&key_file, leaf_key.serialize_pem()).unwrap();
    let server = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(
            vec![leaf.der().clone()],
            rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap(),
        )
        .unwrap();
    TestTls {
        dir,
        ca_file,
        cert_file,
        key_file,
        server: Arc::new(server),
    }
}

/// A real collector (SQLite in a temporary directory) serving HTTPS on a loopback port.
pub struct TestCollector {
    pub running: Option<beacon_collector::RunningCollector>,
    pub addr: SocketAddr,
    /// `https://localhost:PORT`
    pub url: String,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
}

pub async fn start_collector(tls: &TestTls) -> TestCollector {
    let dir = tempfile::tempdir().unwrap();
    let mut c = beacon_collector::Config::default();
    c.server.listen = "127.0.0.1:0".into();
    c.server.data_dir = dir.path().to_path_buf();
    c.admin.token = Some(ADMIN_TOKEN.into());
    c.tls.cert = Some(tls.cert_file.clone());
    c.tls.key = Some(tls.key_file.clone());
    let running = beacon_collector::start(c, Arc::new(beacon_collector::SystemClock))
        .await
        .expect("collector starts");
    let addr = running.local_addr();
    let ca = reqwest::Certificate::from_pem(&std::fs::read(&tls.ca_file).unwrap()).unwrap();
    TestCollector {
        running: Some(running),
        addr,
        url: format!("https://localhost:{}", addr.port()),
        http: reqwest::Client::builder()
            .tls_certs_only([ca])
            .build()
            .unwrap(),
        dir,
    }
}

impl TestCollector {
    pub async fn add_bulletin(&self, id: &str, affected: &str) {
        let r = self
            .http
            .post(format!("{}/admin/v1/bulletins", self.url))
            .bearer_auth(ADMIN_TOKEN)
            .json(&serde_json::json!({
                "id": id, "title": format!("bulletin {id}"), "severity": "high",
                "affected": affected, "fixed_in": "5.37.2", "body": format!("<h1>{id}</h1>")
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
    }

    pub async fn retract(&self, id: &str) {
        let r = self
            .http
            .post(format!("{}/admin/v1/bulletins/{id}/retract", self.url))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }

    /// Creates a project; returns its id and a DSN pointing at `host_port` (e.g. a forwarder's).
    pub async fn create_project(&self, name: &str, host_port: &str) -> (i64, String) {
        let created: serde_json::Value = self
            .http
            .post(format!("{}/admin/v1/projects", self.url))
            .bearer_auth(ADMIN_TOKEN)
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let key = created["keys"][0]["public_key"]
            .as_str()
            .unwrap_or_else(|| panic!("project not created: {created}"));
        let id = created["id"].as_i64().unwrap();
        (id, format!("https://{key}@{host_port}/{id}"))
    }

    pub async fn admin_json(&self, path: &str) -> serde_json::Value {
        let r = self
            .http
            .get(format!("{}/admin/v1{path}", self.url))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.json().await.unwrap()
    }

    pub async fn stored_checks(&self) -> u64 {
        self.running
            .as_ref()
            .unwrap()
            .store
            .count_checks()
            .await
            .unwrap()
    }

    pub async fn stop(mut self) {
        self.running.take().unwrap().shutdown().await.unwrap();
    }
}

/// A loopback TCP forwarder to `target` that counts the connections it accepts.
pub struct Forwarder {
    pub addr: SocketAddr,
    pub connections: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Forwarder {
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
    }
}

pub async fn forwarder(target: SocketAddr) -> Forwarder {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicU64::new(0));
    let count = connections.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                if let Ok(mut outbound) = TcpStream::connect(target).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    Forwarder {
        addr,
        connections,
        task,
    }
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
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicU64::new(0));
    let count = connections.clone();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.server.clone());
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = vec![0u8; 8192];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65536 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                match fault {
                    Fault::Status500 => {
                        let _ = stream
                            .write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                            .await;
                        let _ = stream.shutdown().await;
                    }
                    Fault::Silent => {
                        // Hold the connection open until the client gives up.
                        let _ = stream.read(&mut buf).await;
                    }
                }
            });
        }
    });
    Forwarder {
        addr,
        connections,
        task,
    }
}

/// A CONNECT proxy on loopback (tunnels to loopback targets only); counts the tunnels it opened.
pub async fn connect_proxy() -> Forwarder {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicU64::new(0));
    let count = connections.clone();
    let task = tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                    match inbound.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
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
            });
        }
    });
    Forwarder {
        addr,
        connections,
        task,
    }
}

/// The facts of a Mattermost-like 5.37.0 server.
pub fn facts() -> HostFacts {
    let mut f = HostFacts::new(semver::Version::new(5, 37, 0), "postgres");
    f.os = "linux".into();
    f.build = Some("1234".into());
    f.enterprise = true;
    f.database_version = Some("15.2".into());
    f.teams = Some(3);
    f.users = Some(42);
    f.activated_users = Some(37);
    f
}

/// An agent configuration for a collector at `url`, trusting the test CA, state in `dir`.
pub fn agent_config(url: &str, tls: &TestTls, dir: &std::path::Path) -> Config {
    Config {
        collector: Some(url.to_string()),
        state_file: Some(dir.join("state.json")),
        ca_file: Some(tls.ca_file.clone()),
        first_tick_jitter_secs: 600,
        connect_timeout_secs: 5,
        timeout_secs: 5,
        ..Config::default()
    }
}

/// An environment with nothing set.
pub fn no_env(_: &str) -> Option<String> {
    None
}

/// A notifier that records the bulletins it was given and fails while told to.
#[derive(Clone, Default)]
pub struct Recorder {
    pub calls: Arc<Mutex<Vec<String>>>,
    pub fail: Arc<AtomicBool>,
}

impl Recorder {
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    pub fn notifier(&self) -> impl Fn(&Bulletin) -> Result<(), BoxError> + Send + Sync + 'static {
        let me = self.clone();
        move |b: &Bulletin| {
            me.calls.lock().unwrap().push(b.notice.id.clone());
            assert_eq!(b.body_html, format!("<h1>{}</h1>", b.notice.id));
            if me.fail.load(Ordering::SeqCst) {
                Err("mail server down".into())
            } else {
                Ok(())
            }
        }
    }
}

/// Waits (bounded: 20 s in 10 ms steps) until `cond` holds.
pub async fn wait_until(what: &str, cond: impl Fn() -> bool) {
    for _ in 0..2000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Lets in-flight work settle: a few scheduler turns and a short pause (used before asserting that
/// something did *not* happen; the assertion does not depend on how long this takes).
pub async fn settle() {
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
}
