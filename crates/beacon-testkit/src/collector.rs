//! A collector in this process, on a loopback port.

use crate::{ADMIN_TOKEN, Admin, Project, TestPg, TestTls};
use beacon_collector::{Config, ManualClock, RunningCollector, SystemClock};
use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;

/// Noon UTC on the given day.
pub fn noon(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 12, 0, 0).unwrap()
}

/// A real collector on `127.0.0.1:0`: SQLite in a temporary directory unless started on a
/// [`TestPg`]; admin token [`ADMIN_TOKEN`].
pub struct TestCollector {
    pub running: Option<RunningCollector>,
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`, or `https://localhost:PORT` with [`CollectorBuilder::tls`].
    pub url: String,
    /// A client for [`TestCollector::url`] (trusting the test CA with TLS).
    pub http: reqwest::Client,
    /// The data directory (unless the configuration moved it).
    pub dir: tempfile::TempDir,
    clock: Option<Arc<ManualClock>>,
}

/// A change to the configuration.
type Configure<'a> = Box<dyn FnOnce(&mut Config) + 'a>;

/// How to start a [`TestCollector`].
pub struct CollectorBuilder<'a> {
    tls: Option<&'a TestTls>,
    pg: Option<&'a TestPg>,
    manual_clock: bool,
    configure: Vec<Configure<'a>>,
}

impl<'a> CollectorBuilder<'a> {
    /// Serves HTTPS with the test certificate; the URL names `localhost`.
    pub fn tls(mut self, tls: &'a TestTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Stores in `pg` instead of SQLite.
    pub fn postgres(mut self, pg: &'a TestPg) -> Self {
        self.pg = Some(pg);
        self
    }

    /// Runs on the system clock instead of a [`ManualClock`] at noon on 2026-03-02.
    pub fn system_clock(mut self) -> Self {
        self.manual_clock = false;
        self
    }

    /// Changes the configuration (after the kit's defaults).
    pub fn config(mut self, f: impl FnOnce(&mut Config) + 'a) -> Self {
        self.configure.push(Box::new(f));
        self
    }

    pub async fn start(self) -> TestCollector {
        crate::install_crypto();
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::default();
        c.server.listen = "127.0.0.1:0".into();
        c.server.data_dir = dir.path().to_path_buf();
        c.admin.token = Some(ADMIN_TOKEN.into());
        if let Some(tls) = self.tls {
            c.tls.cert = Some(tls.cert_file.clone());
            c.tls.key = Some(tls.key_file.clone());
        }
        if let Some(pg) = self.pg {
            c.store.url = Some(pg.url.clone());
        }
        for f in self.configure {
            f(&mut c);
        }
        let (running, clock) = if self.manual_clock {
            let clock = Arc::new(ManualClock::new(noon(2026, 3, 2)));
            let running = beacon_collector::start(c, clock.clone()).await;
            (running, Some(clock))
        } else {
            let running = beacon_collector::start(c, Arc::new(SystemClock)).await;
            (running, None)
        };
        let running = running.expect("collector starts");
        let addr = running.local_addr();
        let (url, http) = match self.tls {
            Some(tls) => (format!("https://localhost:{}", addr.port()), tls.client()),
            None => (running.url(), reqwest::Client::new()),
        };
        TestCollector {
            running: Some(running),
            addr,
            url,
            http,
            dir,
            clock,
        }
    }
}

impl TestCollector {
    pub fn builder<'a>() -> CollectorBuilder<'a> {
        CollectorBuilder {
            tls: None,
            pg: None,
            manual_clock: true,
            configure: Vec::new(),
        }
    }

    /// The defaults: plain HTTP, SQLite, a manual clock.
    pub async fn start() -> TestCollector {
        Self::builder().start().await
    }

    /// The defaults, with `config` applied.
    pub async fn start_with(config: impl FnOnce(&mut Config)) -> TestCollector {
        Self::builder().config(config).start().await
    }

    /// The collector's manual clock (panics when it runs on the system clock).
    pub fn clock(&self) -> &ManualClock {
        self.clock.as_deref().expect("started with a manual clock")
    }

    /// The collector's manual clock, shared: for a callback that outlives a borrow of the
    /// collector (the simulator's day hook, say). Panics when it runs on the system clock.
    pub fn shared_clock(&self) -> Arc<ManualClock> {
        self.clock.clone().expect("started with a manual clock")
    }

    /// The running collector.
    pub fn running(&self) -> &RunningCollector {
        self.running.as_ref().expect("running")
    }

    /// An admin client sharing this collector's URL and HTTP client.
    pub fn admin(&self) -> Admin {
        Admin::with_client(&self.url, self.http.clone())
    }

    /// `GET /security?{query}`.
    pub async fn security(&self, query: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/security?{query}", self.url))
            .send()
            .await
            .unwrap()
    }

    /// `GET /admin/v1{path}` with the token, not sent.
    pub fn admin_get(&self, path: &str) -> reqwest::RequestBuilder {
        self.admin().get(path)
    }

    /// `POST /admin/v1{path}` with the token, not sent.
    pub fn admin_post(&self, path: &str) -> reqwest::RequestBuilder {
        self.admin().post(path)
    }

    /// See [`Admin::get_json`].
    pub async fn get_admin(&self, path: &str) -> Value {
        self.admin().get_json(path).await
    }

    /// See [`Admin::post_json`].
    pub async fn post_admin(&self, path: &str, body: Value) -> Value {
        self.admin().post_json(path, body).await
    }

    /// See [`Admin::add_bulletin`].
    pub async fn add_bulletin(&self, id: &str, affected: &str) {
        self.admin().add_bulletin(id, affected).await
    }

    /// See [`Admin::retract`].
    pub async fn retract(&self, id: &str) {
        self.admin().retract(id).await
    }

    /// See [`Admin::create_project`].
    pub async fn create_project(&self, name: &str) -> Project {
        self.admin().create_project(name).await
    }

    /// See [`Admin::create_api_key`].
    pub async fn create_api_key(&self, name: &str) -> String {
        self.admin().create_api_key(name).await
    }

    /// `GET /metrics`: the Prometheus text.
    pub async fn metrics(&self) -> String {
        let r = self.http.get(format!("{}/metrics", self.url)).send();
        r.await.unwrap().text().await.unwrap()
    }

    /// Checks in the store.
    pub async fn stored_checks(&self) -> u64 {
        self.running().store.count_checks().await.unwrap()
    }

    /// Shuts the collector down gracefully; asserts it stopped cleanly.
    pub async fn stop(mut self) {
        self.running.take().unwrap().shutdown().await.unwrap();
    }
}
