//! Shared helpers: an in-process collector on a loopback port with a real SQLite file.
#![allow(dead_code)]

use beacon_collector::{Config, ManualClock, RunningCollector};
use chrono::{DateTime, TimeZone, Utc};
use std::sync::Arc;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef";

pub struct TestCollector {
    pub running: Option<RunningCollector>,
    pub url: String,
    pub clock: Arc<ManualClock>,
    pub http: reqwest::Client,
    pub dir: tempfile::TempDir,
}

pub fn noon(y: i32, m: u32, d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, 12, 0, 0).unwrap()
}

pub fn base_config(dir: &std::path::Path) -> Config {
    let mut c = Config::default();
    c.server.listen = "127.0.0.1:0".into();
    c.server.data_dir = dir.to_path_buf();
    c.admin.token = Some(ADMIN_TOKEN.into());
    c
}

pub async fn start_with(config: impl FnOnce(&mut Config)) -> TestCollector {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let mut c = base_config(dir.path());
    config(&mut c);
    let clock = Arc::new(ManualClock::new(noon(2026, 3, 2)));
    let running = beacon_collector::start(c, clock.clone())
        .await
        .expect("collector starts");
    TestCollector {
        url: running.url(),
        running: Some(running),
        clock,
        http: reqwest::Client::new(),
        dir,
    }
}

pub async fn start() -> TestCollector {
    start_with(|_| {}).await
}

/// The query a Mattermost server builds (Go's url.Values.Encode: keys sorted).
pub fn mattermost_query(id: &str, version: &str, activated: u64) -> String {
    format!(
        "auc={activated}&b={version}.7777&be=true&db=postgres&id={id}&os=linux&tc=2&uc={}&ut=0",
        activated * 2
    )
}

/// A 26-char diagnostic id from a number.
pub fn server_id(n: u32) -> String {
    format!("{n:0>26}")
}

impl TestCollector {
    pub async fn security(&self, query: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/security?{query}", self.url))
            .send()
            .await
            .unwrap()
    }

    pub fn admin_get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}/admin/v1{path}", self.url))
            .bearer_auth(ADMIN_TOKEN)
    }

    pub fn admin_post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}/admin/v1{path}", self.url))
            .bearer_auth(ADMIN_TOKEN)
    }

    pub async fn admin_json(&self, path: &str) -> serde_json::Value {
        let r = self.admin_get(path).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        r.json().await.unwrap()
    }

    pub async fn add_bulletin(&self, id: &str, affected: &str) {
        let r = self
            .admin_post("/bulletins")
            .json(&serde_json::json!({
                "id": id, "title": format!("bulletin {id}"), "severity": "high",
                "affected": affected, "fixed_in": "5.37.2", "body": format!("<h1>{id}</h1>")
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "{}", r.text().await.unwrap());
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
