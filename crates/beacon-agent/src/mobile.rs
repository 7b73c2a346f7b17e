//! The mobile gate: builds the v1.20 mobile payload (`beacon_wire::mobile`) from trace measurements
//! and device information and posts it to `{collector}/v1/mobile/metrics` with the app's API key —
//! only when the app's server reports diagnostics enabled. When it does not, nothing is built and
//! nothing is sent.
//!
//! The gate's answer comes from the app's server: a server running the agent reports
//! [`AgentHandle::diagnostics_enabled`](crate::AgentHandle::diagnostics_enabled) to its apps (for
//! example in the client configuration they fetch), and the app passes it to
//! [`MobileReporter::send`].
//!
//! ```no_run
//! use beacon_agent::mobile::{DeviceInfo, Measurement, MobileReporter, TraceName};
//! # async fn app(server_reports_diagnostics: bool) -> Result<(), Box<dyn std::error::Error>> {
//! let config = beacon_agent::Config {
//!     collector: Some("https://beacon.example.com".into()),
//!     ..Default::default()
//! };
//! let reporter = MobileReporter::new(&config, "bmk_…")?;
//! let device = DeviceInfo {
//!     model: Some("Pixel 7".into()),
//!     version: Some("1.20.0".into()),
//!     ..Default::default()
//! };
//! let took = Measurement::new(TraceName::TeamSwitch, chrono::Utc::now(), std::time::Duration::from_millis(412));
//! reporter.send(server_reports_diagnostics, &[took], &device).await?;
//! # Ok(())
//! # }
//! ```

use crate::config::{Config, EnvLookup, process_env};
use crate::transport::Transport;
use crate::{BuildError, SendError};
pub use beacon_wire::mobile::{DeviceInfo, Payload, TraceName};
use beacon_wire::mobile::{MAX_EVENTS, TraceEvent};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use std::time::Duration;

/// One measured trace: what (`name`), when it started, how long it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measurement {
    pub name: TraceName,
    pub start: DateTime<Utc>,
    pub duration: Duration,
}

impl Measurement {
    pub fn new(name: TraceName, start: DateTime<Utc>, duration: Duration) -> Self {
        Self {
            name,
            start,
            duration,
        }
    }

    fn to_event(self) -> TraceEvent {
        let dur = i64::try_from(self.duration.as_micros()).unwrap_or(i64::MAX);
        TraceEvent::complete(self.name, self.start.timestamp_micros(), dur)
    }
}

/// The v1.20 payload for these measurements and this device (Chrome-trace "complete" events, `ts` and
/// `dur` in microseconds).
pub fn payload(measurements: &[Measurement], device: &DeviceInfo) -> Payload {
    Payload::new(
        device.clone(),
        measurements.iter().map(|m| m.to_event()).collect(),
    )
}

/// What a [`MobileReporter::send`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MobileOutcome {
    /// The app's server reports diagnostics off: nothing was sent.
    Off,
    /// Nothing to send.
    Empty,
    /// Sent (in batches of at most 1 000 events): how many the collector accepted, and the rejected
    /// ones with their index in `measurements` and the collector's reason.
    Sent {
        accepted: u64,
        rejected: Vec<(usize, String)>,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum MobileError {
    #[error("the mobile payload was not answered: {0}")]
    Send(#[from] SendError),
    #[error("the collector refused the mobile payload: {status} {body}")]
    Refused { status: u16, body: String },
}

/// Sends mobile payloads to one collector with one API key.
pub struct MobileReporter {
    url: String,
    api_key: String,
    transport: Arc<Transport>,
}

impl MobileReporter {
    /// A reporter for `config.collector`, with the transport settings of `config` (CA file, proxy,
    /// timeouts, `allow_insecure`, payload log) and the process environment for `HTTPS_PROXY`.
    pub fn new(config: &Config, api_key: &str) -> Result<Self, BuildError> {
        Self::with_env(config, api_key, process_env())
    }

    /// [`new`](Self::new) with `HTTPS_PROXY`/`NO_PROXY` read from `env`.
    pub fn with_env(config: &Config, api_key: &str, env: EnvLookup) -> Result<Self, BuildError> {
        let collector = config.collector.as_deref().ok_or(BuildError::Missing(
            "collector",
            "the mobile reporter needs the collector's url",
        ))?;
        let base = crate::config::check_url("collector", collector, config.allow_insecure)?;
        Ok(Self {
            url: format!("{}/v1/mobile/metrics", base.as_str().trim_end_matches('/')),
            api_key: api_key.to_string(),
            transport: Arc::new(Transport::build(config, &env)?),
        })
    }

    /// Sends the measurements when `server_reports_diagnostics`; otherwise connects to nothing.
    pub async fn send(
        &self,
        server_reports_diagnostics: bool,
        measurements: &[Measurement],
        device: &DeviceInfo,
    ) -> Result<MobileOutcome, MobileError> {
        if !server_reports_diagnostics {
            return Ok(MobileOutcome::Off);
        }
        if measurements.is_empty() {
            return Ok(MobileOutcome::Empty);
        }
        let (mut accepted, mut rejected) = (0, Vec::new());
        for (n, chunk) in measurements.chunks(MAX_EVENTS).enumerate() {
            let body = serde_json::to_string(&payload(chunk, device)).expect("payload serialises");
            self.transport
                .log_payload("mobile", "POST", &self.url, Some(body.clone()))
                .await;
            let response = self
                .transport
                .client
                .post(&self.url)
                .header("x-api-key", &self.api_key)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .map_err(SendError::http)?;
            let status = response.status();
            let answer = crate::transport::read_limited(response, 1 << 20).await?;
            if !status.is_success() {
                return Err(MobileError::Refused {
                    status: status.as_u16(),
                    body: String::from_utf8_lossy(&answer).chars().take(500).collect(),
                });
            }
            // `{"accepted": N, "rejected": [{"index": I, "reason": "…"}]}`
            let answer: serde_json::Value = serde_json::from_slice(&answer).unwrap_or_default();
            accepted += answer["accepted"].as_u64().unwrap_or(0);
            for r in answer["rejected"].as_array().into_iter().flatten() {
                let index = r["index"].as_u64().unwrap_or(0) as usize + n * MAX_EVENTS;
                rejected.push((index, r["reason"].as_str().unwrap_or("").to_string()));
            }
        }
        Ok(MobileOutcome::Sent { accepted, rejected })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_is_the_v1_20_shape_and_the_collector_accepts_it() {
        let start = Utc::now() - chrono::TimeDelta::minutes(5);
        let device = DeviceInfo {
            api_level: Some(33),
            brand: Some("google".into()),
            model: Some("Pixel 7".into()),
            version: Some("1.20.0".into()),
            ..Default::default()
        };
        let p = payload(
            &[Measurement::new(
                TraceName::TeamSwitch,
                start,
                Duration::from_millis(412),
            )],
            &device,
        );
        let v = serde_json::to_value(&p).unwrap();
        let e = &v["data"]["trace_events"][0];
        assert_eq!(e["cat"], "react-native");
        assert_eq!(e["ph"], "X");
        assert_eq!(e["name"], "team:switch");
        assert_eq!(e["ts"], start.timestamp_micros());
        assert_eq!(e["dur"], 412_000);
        assert_eq!(e["args"]["instanceKey"], 0);
        assert_eq!(e["args"]["tag"], "team:switch");
        assert_eq!(v["data"]["device_info"]["model"], "Pixel 7");
        let body = serde_json::to_vec(&p).unwrap();
        let batch = beacon_wire::mobile::parse_batch(&body, Utc::now()).unwrap();
        assert_eq!((batch.accepted.len(), batch.rejected.len()), (1, 0));
    }
}
