//! Configuration: a TOML file, every key overridable by `BEACON_<SECTION>_<KEY>`, then command-line
//! flags. [`Config::problems`] lists everything wrong with a configuration, for `beacon config check`.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: ServerConfig,
    pub store: StoreConfig,
    pub tls: TlsConfig,
    pub admin: AdminConfig,
    pub reports: ReportsConfig,
    pub ingest: IngestConfig,
    pub errors: ErrorsConfig,
    pub deadletters: DeadLettersConfig,
    pub ui: UiConfig,
    pub retention: RetentionConfig,
    pub alerts: AlertsConfig,
}

/// `[alerts]`: how often rules are evaluated and notifications sent, and what their links point at.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// How often the alert job runs: one collector evaluates every rule, then every collector
    /// posts the notifications due.
    pub interval_secs: u64,
    /// Longest wait for a destination's answer.
    pub timeout_secs: u64,
    /// The dashboard's address as the team reaches it (`https://beacon.example.com`): notifications
    /// link to its pages. Without it they name the CLI command that shows more.
    pub public_url: Option<String>,
}

impl Default for AlertsConfig {
    fn default() -> Self {
        Self {
            interval_secs: 60,
            timeout_secs: 10,
            public_url: None,
        }
    }
}

impl AlertsConfig {
    fn problems(&self, p: &mut Vec<String>) {
        if !(1..=86_400).contains(&self.interval_secs) {
            p.push(format!(
                "alerts.interval_secs: must be between 1 and 86400 seconds, got {}",
                self.interval_secs
            ));
        }
        if !(1..=60).contains(&self.timeout_secs) {
            p.push(format!(
                "alerts.timeout_secs: must be between 1 and 60 seconds, got {}",
                self.timeout_secs
            ));
        }
        if let Some(u) = self.public_url.as_deref().filter(|u| !u.is_empty())
            && !(u.starts_with("https://") || u.starts_with("http://"))
        {
            p.push(format!(
                "alerts.public_url: must start with https:// or http://, got {u:?}"
            ));
        }
    }
}

/// `[retention]`: days each channel's data is kept after the UTC day it belongs to; `0` keeps it
/// forever. A background job removes what expired (see `beacon_store::retention`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Security update checks (one row per server and day).
    pub checks_days: u64,
    /// Error events; an issue goes with its last event.
    pub events_days: u64,
    /// Raw mobile trace events (reports read the sketches).
    pub trace_events_days: u64,
    /// Mobile sketch rows (the aggregates performance reports read).
    pub sketches_days: u64,
    /// Dead letters (also capped by `[deadletters] max_per_channel`).
    pub dead_letters_days: u64,
    /// How often the job looks at the clock (the first time that long after start); it purges once
    /// per UTC day.
    pub interval_secs: u64,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        let p = beacon_store::retention::RetentionPolicy::default();
        Self {
            checks_days: p.checks_days.into(),
            events_days: p.events_days.into(),
            trace_events_days: p.trace_events_days.into(),
            sketches_days: p.sketches_days.into(),
            dead_letters_days: p.dead_letters_days.into(),
            interval_secs: 600,
        }
    }
}

impl RetentionConfig {
    /// The policy the store applies (valid once [`Config::problems`] is empty).
    pub fn policy(&self) -> beacon_store::retention::RetentionPolicy {
        let days = |d: u64| u32::try_from(d).unwrap_or(u32::MAX);
        beacon_store::retention::RetentionPolicy {
            checks_days: days(self.checks_days),
            events_days: days(self.events_days),
            trace_events_days: days(self.trace_events_days),
            sketches_days: days(self.sketches_days),
            dead_letters_days: days(self.dead_letters_days),
        }
    }

    fn problems(&self, p: &mut Vec<String>) {
        let max = beacon_store::retention::MAX_DAYS;
        for (key, days) in [
            ("checks_days", self.checks_days),
            ("events_days", self.events_days),
            ("trace_events_days", self.trace_events_days),
            ("sketches_days", self.sketches_days),
            ("dead_letters_days", self.dead_letters_days),
        ] {
            if days > u64::from(max) {
                p.push(format!(
                    "retention.{key}: must be between 0 (keep forever) and {max} days, got {days}"
                ));
            }
        }
        if !(1..=86_400).contains(&self.interval_secs) {
            p.push(format!(
                "retention.interval_secs: must be between 1 and 86400 seconds, got {}",
                self.interval_secs
            ));
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// A dashboard session ends this many hours after its login.
    pub session_hours: u64,
    /// Failed dashboard logins allowed per client address and minute; then `429` until the minute ends.
    pub login_attempts_per_minute: u64,
}

impl Default for UiConfig {
    fn default() -> Self {
        Self {
            session_hours: 12,
            login_attempts_per_minute: 10,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeadLettersConfig {
    /// Most dead letters kept per channel; beyond it the oldest are removed (and counted), so
    /// malformed requests cannot grow the database.
    pub max_per_channel: u64,
}

impl Default for DeadLettersConfig {
    fn default() -> Self {
        Self {
            max_per_channel: 10_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ErrorsConfig {
    /// Events per minute per key, unless the key has its own limit.
    pub rate_limit_per_minute: u64,
}

impl Default for ErrorsConfig {
    fn default() -> Self {
        Self {
            rate_limit_per_minute: 60_000,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address and port to listen on.
    pub listen: String,
    /// Where the SQLite database (`beacon.db`) lives, unless `[store] url` names another place.
    pub data_dir: PathBuf,
    /// On SIGTERM/SIGINT, how long in-flight requests get to finish.
    pub shutdown_grace_secs: u64,
    /// Time a client has to send a complete request head (HTTP/1.1; the clock also runs while a
    /// keep-alive connection waits for its next request), and to finish a TLS handshake. A new
    /// connection that has not started a request (any protocol) within it is closed too.
    pub header_read_timeout_secs: u64,
    /// Time a request body has to arrive in full, from the end of its head; then `408` and the
    /// connection is closed.
    pub body_timeout_secs: u64,
    /// A connection with no request in flight for this long is closed (HTTP/2 gets a GOAWAY).
    pub idle_timeout_secs: u64,
    /// A response the client does not read for this long (the socket accepts no byte) closes the
    /// connection.
    pub write_timeout_secs: u64,
    /// Most connections served at once. Beyond it a connection gets a `503` and is closed; the
    /// collector lowers the cap at start (with a warning) to stay within the open-files limit.
    pub max_connections: u64,
    /// Most concurrent requests (streams) on one HTTP/2 connection.
    pub http2_max_streams: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite:PATH` or `postgres://USER@HOST:PORT/DB`; empty means `sqlite:<data_dir>/beacon.db`.
    pub url: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain; with `key`, the collector speaks HTTPS (HTTP/1.1 and HTTP/2).
    pub cert: Option<PathBuf>,
    /// PEM private key.
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// The initial admin token, used only when the store has none yet (`BEACON_ADMIN_TOKEN`).
    pub token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportsConfig {
    /// k-anonymity: groups with fewer distinct servers are folded into `other`.
    pub min_group_size: u64,
    /// A server is "gone" after this many days without a check.
    pub gone_after_days: u32,
    /// Default window of the exposure report.
    pub exposure_window_days: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// Most items committed in one transaction.
    pub batch_max: usize,
    /// Items waiting for a commit before new requests wait for room.
    pub queue: usize,
    /// How often bulletins are re-read from the store (other collectors may change them).
    pub bulletin_refresh_secs: u64,
    /// How often mobile sketch deltas are merged into one row per group.
    pub perf_compact_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./beacon-data"),
            shutdown_grace_secs: 30,
            header_read_timeout_secs: 10,
            body_timeout_secs: 60,
            idle_timeout_secs: 60,
            write_timeout_secs: 30,
            max_connections: 10_000,
            http2_max_streams: 100,
        }
    }
}

impl Default for ReportsConfig {
    fn default() -> Self {
        Self {
            min_group_size: 5,
            gone_after_days: 3,
            exposure_window_days: 7,
        }
    }
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            batch_max: 1024,
            queue: 16384,
            bulletin_refresh_secs: 10,
            perf_compact_secs: 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Int,
}

/// Every key of the file, with its type, for environment overrides.
const KEYS: &[(&str, &str, Kind)] = &[
    ("server", "listen", Kind::Str),
    ("server", "data_dir", Kind::Str),
    ("server", "shutdown_grace_secs", Kind::Int),
    ("server", "header_read_timeout_secs", Kind::Int),
    ("server", "body_timeout_secs", Kind::Int),
    ("server", "idle_timeout_secs", Kind::Int),
    ("server", "write_timeout_secs", Kind::Int),
    ("server", "max_connections", Kind::Int),
    ("server", "http2_max_streams", Kind::Int),
    ("store", "url", Kind::Str),
    ("tls", "cert", Kind::Str),
    ("tls", "key", Kind::Str),
    ("admin", "token", Kind::Str),
    ("reports", "min_group_size", Kind::Int),
    ("reports", "gone_after_days", Kind::Int),
    ("reports", "exposure_window_days", Kind::Int),
    ("ingest", "batch_max", Kind::Int),
    ("ingest", "queue", Kind::Int),
    ("ingest", "bulletin_refresh_secs", Kind::Int),
    ("ingest", "perf_compact_secs", Kind::Int),
    ("errors", "rate_limit_per_minute", Kind::Int),
    ("deadletters", "max_per_channel", Kind::Int),
    ("ui", "session_hours", Kind::Int),
    ("ui", "login_attempts_per_minute", Kind::Int),
    ("retention", "checks_days", Kind::Int),
    ("retention", "events_days", Kind::Int),
    ("retention", "trace_events_days", Kind::Int),
    ("retention", "sketches_days", Kind::Int),
    ("retention", "dead_letters_days", Kind::Int),
    ("retention", "interval_secs", Kind::Int),
    ("alerts", "interval_secs", Kind::Int),
    ("alerts", "timeout_secs", Kind::Int),
    ("alerts", "public_url", Kind::Str),
];

/// A configuration that cannot be loaded, with every reason.
#[derive(Debug, thiserror::Error)]
#[error("{}", .0.join("\n"))]
pub struct ConfigError(pub Vec<String>);

/// Where a store lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Sqlite(PathBuf),
    /// A `postgres://` or `postgresql://` URL.
    Postgres(String),
}

impl Config {
    /// Loads `file` (if any), then applies `BEACON_<SECTION>_<KEY>` variables from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let mut table = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError(vec![format!("cannot read {}: {e}", path.display())])
                })?;
                text.parse::<toml::Table>().map_err(|e| {
                    ConfigError(vec![format!(
                        "{}: {}",
                        path.display(),
                        e.to_string().trim_end()
                    )])
                })?
            }
            None => toml::Table::new(),
        };
        let mut problems = Vec::new();
        for (name, value) in env {
            if let Err(p) = apply_env(&mut table, &name, value) {
                problems.push(p);
            }
        }
        let origin = file
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "environment".into());
        let config = Config::deserialize(toml::Value::Table(table)).map_err(|e| {
            let mut all = problems.clone();
            all.push(format!("{origin}: {}", e.to_string().trim_end()));
            ConfigError(all)
        })?;
        if !problems.is_empty() {
            return Err(ConfigError(problems));
        }
        Ok(config)
    }

    /// Everything wrong with this configuration; empty when it is usable.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if let Err(e) = self.server.listen.parse::<std::net::SocketAddr>() {
            p.push(format!("server.listen: {:?} is not an address with a port ({e}); example: \"127.0.0.1:8080\"", self.server.listen));
        }
        if let Err(e) = self.store_url() {
            p.push(e);
        }
        // A day is far beyond any sane timeout, and keeps `Duration` arithmetic far from overflow.
        for (key, secs) in [
            (
                "header_read_timeout_secs",
                self.server.header_read_timeout_secs,
            ),
            ("body_timeout_secs", self.server.body_timeout_secs),
            ("idle_timeout_secs", self.server.idle_timeout_secs),
            ("write_timeout_secs", self.server.write_timeout_secs),
        ] {
            if !(1..=86_400).contains(&secs) {
                p.push(format!(
                    "server.{key}: must be between 1 and 86400 seconds, got {secs}"
                ));
            }
        }
        if !(1..=1_000_000).contains(&self.server.max_connections) {
            p.push(format!(
                "server.max_connections: must be between 1 and 1000000, got {}",
                self.server.max_connections
            ));
        }
        if !(1..=10_000).contains(&self.server.http2_max_streams) {
            p.push(format!(
                "server.http2_max_streams: must be between 1 and 10000, got {}",
                self.server.http2_max_streams
            ));
        }
        match (&self.tls.cert, &self.tls.key) {
            (Some(_), None) => {
                p.push("tls: cert is set but key is not; set both or neither".into())
            }
            (None, Some(_)) => {
                p.push("tls: key is set but cert is not; set both or neither".into())
            }
            (Some(cert), Some(key)) => {
                for (name, path, marker) in
                    [("cert", cert, "CERTIFICATE"), ("key", key, "PRIVATE KEY")]
                {
                    match std::fs::read_to_string(path) {
                        Err(e) => {
                            p.push(format!("tls.{name}: cannot read {}: {e}", path.display()))
                        }
                        Ok(pem) if !pem.contains("-----BEGIN ") || !pem.contains(marker) => p.push(
                            format!("tls.{name}: {} holds no PEM {marker}", path.display()),
                        ),
                        Ok(_) => {}
                    }
                }
            }
            (None, None) => {}
        }
        if self.reports.min_group_size == 0 {
            p.push("reports.min_group_size: must be at least 1".into());
        }
        if self.reports.exposure_window_days == 0 {
            p.push("reports.exposure_window_days: must be at least 1".into());
        }
        if self.ingest.batch_max == 0 || self.ingest.queue == 0 {
            p.push("ingest: batch_max and queue must be at least 1".into());
        }
        if self.errors.rate_limit_per_minute == 0 {
            p.push("errors.rate_limit_per_minute: must be at least 1".into());
        }
        if self.ingest.perf_compact_secs == 0 {
            p.push("ingest.perf_compact_secs: must be at least 1".into());
        }
        if self.ingest.bulletin_refresh_secs == 0 {
            p.push("ingest.bulletin_refresh_secs: must be at least 1".into());
        }
        if !(1..=24 * 366).contains(&self.ui.session_hours) {
            p.push("ui.session_hours: must be between 1 and 8784 (a year)".into());
        }
        if !(1..=1_000_000).contains(&self.ui.login_attempts_per_minute) {
            p.push("ui.login_attempts_per_minute: must be between 1 and 1000000".into());
        }
        if let Some(t) = &self.admin.token
            && t.len() < 16
        {
            p.push("admin.token: must be at least 16 characters".into());
        }
        self.retention.problems(&mut p);
        self.alerts.problems(&mut p);
        p
    }

    /// The store to open: `store.url`, or SQLite in the data directory.
    pub fn store_url(&self) -> Result<StoreUrl, String> {
        match self.store.url.as_deref().filter(|u| !u.is_empty()) {
            None => Ok(StoreUrl::Sqlite(self.server.data_dir.join("beacon.db"))),
            Some(url) => {
                if let Some(path) = url
                    .strip_prefix("sqlite://")
                    .or_else(|| url.strip_prefix("sqlite:"))
                {
                    if path.is_empty() {
                        return Err("store.url: sqlite: needs a file path, e.g. sqlite:/var/lib/beacon/beacon.db".into());
                    }
                    Ok(StoreUrl::Sqlite(PathBuf::from(path)))
                } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
                    url.parse::<beacon_store_postgres::PgConfig>()
                        .map_err(|e| {
                            format!(
                                "store.url: {:?} is not a valid postgres url: {e}",
                                redact_url(url)
                            )
                        })?;
                    Ok(StoreUrl::Postgres(url.to_string()))
                } else {
                    Err(format!(
                        "store.url: {:?} has an unknown scheme; use sqlite:PATH or postgres://USER@HOST:PORT/DB",
                        redact_url(url)
                    ))
                }
            }
        }
    }
}

/// Hides a password in a URL before it is shown.
fn redact_url(url: &str) -> String {
    beacon_scrub::scrub_text(url).text
}

fn apply_env(table: &mut toml::Table, name: &str, value: String) -> Result<(), String> {
    let Some(rest) = name.strip_prefix("BEACON_") else {
        return Ok(());
    };
    let rest = rest.to_ascii_lowercase();
    let Some(section) = KEYS
        .iter()
        .map(|k| k.0)
        .find(|s| rest.starts_with(&format!("{s}_")))
    else {
        // Not a configuration variable (BEACON_URL, BEACON_TOKEN are the CLI's).
        return Ok(());
    };
    let key = &rest[section.len() + 1..];
    let Some((_, _, kind)) = KEYS.iter().find(|k| k.0 == section && k.1 == key) else {
        let known: Vec<_> = KEYS
            .iter()
            .filter(|k| k.0 == section)
            .map(|k| format!("BEACON_{}_{}", k.0, k.1).to_uppercase())
            .collect();
        return Err(format!(
            "{name}: no such configuration key; [{section}] has {}",
            known.join(", ")
        ));
    };
    let v = match kind {
        Kind::Str => toml::Value::String(value),
        Kind::Int => toml::Value::Integer(
            value
                .trim()
                .parse()
                .map_err(|_| format!("{name}: must be an integer, got {value:?}"))?,
        ),
    };
    let entry = table
        .entry(section.to_string())
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    match entry {
        toml::Value::Table(t) => {
            t.insert(key.to_string(), v);
            Ok(())
        }
        _ => Err(format!("{name}: [{section}] in the file is not a table")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `KEYS` (the environment variables `BEACON_<SECTION>_<KEY>`) is kept by hand: it must name
    /// every field of every section of [`Config`], once, with the right kind.
    #[test]
    fn every_config_field_has_an_environment_variable() {
        let json = serde_json::to_value(Config::default()).expect("config serializes");
        let mut fields = std::collections::BTreeMap::new();
        for (section, table) in json.as_object().expect("sections") {
            for (key, value) in table.as_object().expect("a section is a table") {
                fields.insert((section.clone(), key.clone()), value.clone());
            }
        }
        let mut listed = std::collections::BTreeSet::new();
        for (section, key, kind) in KEYS {
            assert!(
                listed.insert((section.to_string(), key.to_string())),
                "{section}.{key} listed twice in KEYS"
            );
            let value = fields
                .get(&(section.to_string(), key.to_string()))
                .unwrap_or_else(|| panic!("KEYS has {section}.{key}, which Config does not"));
            let kind_fits = match kind {
                Kind::Int => value.is_u64(),
                Kind::Str => value.is_string() || value.is_null(),
            };
            assert!(
                kind_fits,
                "{section}.{key}: KEYS says {kind:?}, the default is {value}"
            );
        }
        let missing: Vec<_> = fields.keys().filter(|k| !listed.contains(*k)).collect();
        assert!(
            missing.is_empty(),
            "Config fields without an entry in KEYS: {missing:?}"
        );
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_are_usable() {
        let c = Config::load(None, env(&[])).unwrap();
        assert_eq!(c, Config::default());
        assert!(c.problems().is_empty());
        assert_eq!(
            c.store_url().unwrap(),
            StoreUrl::Sqlite(PathBuf::from("./beacon-data/beacon.db"))
        );
    }

    #[test]
    fn every_key_can_be_set_from_the_environment() {
        for (section, key, kind) in KEYS {
            let name = format!("BEACON_{section}_{key}").to_uppercase();
            let value = match kind {
                Kind::Str => "x",
                Kind::Int => "7",
            };
            let c = Config::load(None, env(&[(&name, value)]))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let t = toml::Table::try_from(&c).unwrap();
            let got = &t[*section][*key];
            assert_eq!(got.to_string().trim_matches('"'), value, "{name}");
        }
    }

    #[test]
    fn environment_overrides_file_and_unknown_keys_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("beacon.toml");
        std::fs::write(
            &f,
            "[server]\nlisten = \"127.0.0.1:9000\"\n[reports]\nmin_group_size = 3\n",
        )
        .unwrap();
        let c = Config::load(
            Some(&f),
            env(&[("BEACON_REPORTS_MIN_GROUP_SIZE", "10"), ("BEACON_URL", "x")]),
        )
        .unwrap();
        assert_eq!(c.server.listen, "127.0.0.1:9000");
        assert_eq!(c.reports.min_group_size, 10);

        std::fs::write(&f, "[server]\nlisen = \"127.0.0.1:9000\"\n").unwrap();
        let e = Config::load(Some(&f), env(&[])).unwrap_err().to_string();
        assert!(e.contains("lisen") && e.contains("listen"), "{e}");

        let e = Config::load(None, env(&[("BEACON_SERVER_LISEN", "x")]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("BEACON_SERVER_LISEN") && e.contains("BEACON_SERVER_LISTEN"),
            "{e}"
        );
        let e = Config::load(None, env(&[("BEACON_REPORTS_MIN_GROUP_SIZE", "many")]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("integer"), "{e}");
    }

    #[test]
    fn problems_are_specific() {
        let mut c = Config::default();
        c.server.listen = "localhost".into();
        c.tls.cert = Some("/nonexistent/cert.pem".into());
        c.reports.min_group_size = 0;
        c.store.url = Some("mysql://x".into());
        c.server.header_read_timeout_secs = 0;
        c.server.max_connections = 0;
        c.retention.events_days = 100_000;
        c.retention.interval_secs = 0;
        c.alerts.interval_secs = 0;
        c.alerts.public_url = Some("beacon.example.com".into());
        let pg = Config {
            store: StoreConfig {
                url: Some("postgres://u@h:5432/db".into()),
            },
            ..Config::default()
        };
        assert!(pg.problems().is_empty(), "{:?}", pg.problems());
        let p = c.problems().join("\n");
        for want in [
            "server.listen",
            "tls: cert is set but key is not",
            "min_group_size",
            "store.url",
            "server.header_read_timeout_secs",
            "server.max_connections",
            "retention.events_days",
            "retention.interval_secs",
            "alerts.interval_secs",
            "alerts.public_url",
        ] {
            assert!(p.contains(want), "{want} in {p}");
        }
    }
}
