//! Helpers of the agent's tests: the test kit's TLS collector, the facts of a Mattermost-like host,
//! an agent configuration for it, and a notifier that records what it was given.

use beacon_agent::{BoxError, Bulletin, Config, HostFacts};
use beacon_testkit::{TestCollector, TestTls};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// The test CA and leaf every agent test trusts and serves.
pub fn test_tls() -> TestTls {
    TestTls::new("beacon agent test ca")
}

/// A real collector (SQLite, system clock) serving HTTPS on a loopback port.
pub async fn start_collector(tls: &TestTls) -> TestCollector {
    TestCollector::builder()
        .tls(tls)
        .system_clock()
        .start()
        .await
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
