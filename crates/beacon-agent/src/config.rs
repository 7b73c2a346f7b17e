//! The agent's configuration and the switches it resolves to.

use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Who runs the server the agent lives in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Deployment {
    /// A customer runs it: every switch is theirs, and `DO_NOT_TRACK=1` turns both channels off.
    #[default]
    SelfHosted,
    /// The vendor runs it (managed cloud): both channels are always on, whatever is configured.
    Cloud,
}

/// The agent's configuration. Every key has a default except `collector` (needed when security alerts
/// are on) and `errors.dsn` (no error reports without it). Deserialises from the keys documented in
/// the README (section "The agent"); unknown keys are refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The collector's base URL, e.g. `https://beacon.example.com`; checks go to `{collector}/security`.
    pub collector: Option<String>,
    pub deployment: Deployment,
    /// The daily security check and its bulletin alerts.
    pub security_alerts: bool,
    /// Error and panic reports (and the mobile gate's answer).
    pub diagnostics: bool,
    /// The JSON state file, when the host gives no [`State`](crate::State) of its own.
    pub state_file: Option<PathBuf>,
    /// How often the schedule wakes up to see whether a check is due (a check is due 24 hours after
    /// the last).
    pub tick_interval_secs: u64,
    /// The first tick comes after a random delay of up to this many seconds.
    pub first_tick_jitter_secs: u64,
    pub connect_timeout_secs: u64,
    /// Whole request, connection included.
    pub timeout_secs: u64,
    /// Allow plain `http://` to hosts other than loopback (never needed in production).
    pub allow_insecure: bool,
    /// Extra CA certificates (PEM) trusted besides the system's.
    pub ca_file: Option<PathBuf>,
    /// HTTP(S) proxy URL; when unset, `HTTPS_PROXY` (or `https_proxy`) from the environment.
    pub proxy: Option<String>,
    /// Hosts reached without the proxy (comma-separated, as `NO_PROXY`); when unset, `NO_PROXY` (or
    /// `no_proxy`) from the environment.
    pub no_proxy: Option<String>,
    /// Append every payload sent to `payload_log_file`.
    pub payload_log: bool,
    /// Default: `beacon-agent-payloads.log` beside the state file.
    pub payload_log_file: Option<PathBuf>,
    /// The log is rotated (`FILE.1`, `FILE.2` …) before it would grow past this size.
    pub payload_log_max_bytes: u64,
    /// Rotated files kept.
    pub payload_log_keep: u32,
    pub errors: ErrorsConfig,
}

/// Error and panic reporting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ErrorsConfig {
    /// The project DSN printed by `beacon project create`.
    pub dsn: Option<String>,
    /// Sent as the event's `release`, e.g. `myserver@5.37.0`.
    pub release: Option<String>,
    /// Sent as the event's `environment`.
    pub environment: Option<String>,
    /// Reports waiting to be sent; when full, new reports are dropped and counted.
    pub queue: usize,
    /// Report panics through a panic hook (chained to the one installed before).
    pub capture_panics: bool,
    /// Function path prefixes of the host's own code (e.g. `myserver::`), marked in-app for grouping.
    pub in_app: Vec<String>,
    /// Resolve files and line numbers of stack frames from the binary's debug information. Off:
    /// function names only, from the symbol table — a few ms and no lasting memory per report. On:
    /// the DWARF resolver, which for a large binary adds tens of MB of resident memory to the host.
    pub resolve_lines: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            collector: None,
            deployment: Deployment::SelfHosted,
            security_alerts: true,
            diagnostics: true,
            state_file: None,
            tick_interval_secs: 4 * 3600,
            first_tick_jitter_secs: 600,
            connect_timeout_secs: 10,
            timeout_secs: 30,
            allow_insecure: false,
            ca_file: None,
            proxy: None,
            no_proxy: None,
            payload_log: false,
            payload_log_file: None,
            payload_log_max_bytes: 1 << 20,
            payload_log_keep: 3,
            errors: ErrorsConfig::default(),
        }
    }
}

impl Default for ErrorsConfig {
    fn default() -> Self {
        Self {
            dsn: None,
            release: None,
            environment: None,
            queue: 32,
            capture_panics: true,
            in_app: Vec::new(),
            resolve_lines: false,
        }
    }
}

/// What the agent will do, after the deployment and `DO_NOT_TRACK` have had their say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Switches {
    pub deployment: Deployment,
    pub security_alerts: bool,
    pub diagnostics: bool,
    /// Why a switch differs from its configured value (also logged at start).
    pub notes: Vec<String>,
}

/// Looks up an environment variable. The default reads the process environment.
pub type EnvLookup = std::sync::Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// The process environment.
pub fn process_env() -> EnvLookup {
    std::sync::Arc::new(|k| std::env::var(k).ok())
}

/// Whether `DO_NOT_TRACK` asks for no telemetry: `1` or `true` (any case).
pub fn do_not_track(env: &dyn Fn(&str) -> Option<String>) -> bool {
    env("DO_NOT_TRACK").is_some_and(|v| {
        let v = v.trim();
        v == "1" || v.eq_ignore_ascii_case("true")
    })
}

impl Config {
    /// Resolves the switches: on `cloud` both are on whatever is configured; on `self_hosted`,
    /// `DO_NOT_TRACK=1` turns both off, else the configured values hold.
    pub fn switches(&self, env: &dyn Fn(&str) -> Option<String>) -> Switches {
        let dnt = do_not_track(env);
        let mut notes = Vec::new();
        let (security_alerts, diagnostics) = match self.deployment {
            Deployment::Cloud => {
                for (name, on) in [
                    ("security_alerts", self.security_alerts),
                    ("diagnostics", self.diagnostics),
                ] {
                    if !on {
                        notes.push(format!(
                            "deployment is cloud: {name} is forced on (configured off)"
                        ));
                    }
                }
                if dnt {
                    notes.push("deployment is cloud: DO_NOT_TRACK is ignored".into());
                }
                (true, true)
            }
            Deployment::SelfHosted if dnt => {
                if self.security_alerts || self.diagnostics {
                    notes.push(
                        "DO_NOT_TRACK is set: security_alerts and diagnostics are off".into(),
                    );
                }
                (false, false)
            }
            Deployment::SelfHosted => (self.security_alerts, self.diagnostics),
        };
        Switches {
            deployment: self.deployment,
            security_alerts,
            diagnostics,
            notes,
        }
    }
}

/// A URL the agent may send to: `https://`, or `http://` only to a loopback host (`localhost`,
/// `127.0.0.0/8`, `::1`) or with `allow_insecure`.
pub fn check_url(
    what: &str,
    url: &str,
    allow_insecure: bool,
) -> Result<reqwest::Url, crate::BuildError> {
    let bad = |problem: String| crate::BuildError::Url {
        what: what.to_string(),
        problem,
    };
    let parsed = reqwest::Url::parse(url).map_err(|e| bad(format!("not a url: {e}")))?;
    match parsed.scheme() {
        "https" => {}
        "http" if allow_insecure || is_loopback(&parsed) => {}
        "http" => {
            return Err(bad(format!(
                "plain http to {} is refused: use https (http is allowed only to loopback, or with allow_insecure)",
                parsed.host_str().unwrap_or("?")
            )));
        }
        other => return Err(bad(format!("scheme {other:?} is not http or https"))),
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("has no host".into()));
    }
    Ok(parsed)
}

fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn switches_follow_deployment_and_do_not_track() {
        let mut c = Config::default();
        let s = c.switches(&env(&[]));
        assert!(s.security_alerts && s.diagnostics && s.notes.is_empty());
        let s = c.switches(&env(&[("DO_NOT_TRACK", "1")]));
        assert!(!s.security_alerts && !s.diagnostics);
        assert_eq!(s.notes.len(), 1);
        assert!(!c.switches(&env(&[("DO_NOT_TRACK", "TRUE")])).diagnostics);
        assert!(c.switches(&env(&[("DO_NOT_TRACK", "0")])).diagnostics);
        c.security_alerts = false;
        let s = c.switches(&env(&[]));
        assert!(!s.security_alerts && s.diagnostics);
        c.deployment = Deployment::Cloud;
        c.diagnostics = false;
        let s = c.switches(&env(&[("DO_NOT_TRACK", "1")]));
        assert!(s.security_alerts && s.diagnostics);
        assert_eq!(s.notes.len(), 3, "{:?}", s.notes);
    }

    #[test]
    fn plain_http_only_to_loopback_or_when_allowed() {
        for ok in [
            "https://beacon.example.com",
            "http://127.0.0.1:8080",
            "http://127.8.9.10",
            "http://localhost:1",
            "http://[::1]:80/x",
        ] {
            assert!(check_url("collector", ok, false).is_ok(), "{ok}");
        }
        for refused in [
            "http://beacon.example.com",
            "http://10.0.0.1",
            "http://[2001:db8::1]",
            "ftp://127.0.0.1",
            "beacon.example.com",
        ] {
            assert!(check_url("collector", refused, false).is_err(), "{refused}");
        }
        assert!(check_url("collector", "http://beacon.example.com", true).is_ok());
    }
}
