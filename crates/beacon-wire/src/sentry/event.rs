//! The stored form of an error event.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Debug,
    Info,
    Warning,
    #[default]
    Error,
    Fatal,
}

/// What Beacon keeps of an event, after projection and before scrubbing; scrubbing edits it in place.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct StoredEvent {
    /// 32 lower-case hex characters.
    pub event_id: String,
    pub timestamp: DateTime<Utc>,
    pub platform: Option<String>,
    pub level: Level,
    pub release: Option<String>,
    pub environment: Option<String>,
    /// `message` / `logentry.formatted` / `logentry.message`.
    pub message: Option<String>,
    /// The exception chain, as Sentry orders it (the last one is the one raised).
    pub exceptions: Vec<StoredException>,
    pub tags: BTreeMap<String, String>,
    /// Only the `os`, `runtime` and `app` contexts, only their scalar values.
    pub contexts: BTreeMap<String, BTreeMap<String, serde_json::Value>>,
    /// `extra` values that passed scrubbing unchanged.
    pub extra: BTreeMap<String, serde_json::Value>,
    /// The event's own grouping fingerprint, if it gave one.
    pub fingerprint: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StoredException {
    #[serde(rename = "type")]
    pub ty: Option<String>,
    pub value: Option<String>,
    pub module: Option<String>,
    pub mechanism: Option<Mechanism>,
    /// Oldest call first, as Sentry sends them.
    pub frames: Vec<StoredFrame>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Mechanism {
    #[serde(rename = "type")]
    pub ty: String,
    pub handled: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct StoredFrame {
    pub module: Option<String>,
    pub function: Option<String>,
    pub filename: Option<String>,
    pub lineno: Option<u64>,
    pub in_app: Option<bool>,
}
