//! The stored form of an error event.

use crate::text::{make_storable, make_value_storable, storable};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Debug,
    Info,
    Warning,
    #[default]
    Error,
    Fatal,
}

impl Level {
    /// The name Sentry uses, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warning => "warning",
            Level::Error => "error",
            Level::Fatal => "fatal",
        }
    }
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

/// Largest event accepted (one store body or one envelope item), in bytes.
pub const MAX_EVENT_BYTES: usize = 1 << 20;

/// Most exceptions in one event's chain; more is refused (`too_many_exceptions`).
pub const MAX_EXCEPTIONS: usize = 64;
/// Most stack frames in one event, over all its exceptions, as sent (before each exception keeps its
/// newest [`MAX_FRAMES`]); more is refused (`too_many_frames`).
pub const MAX_EVENT_FRAMES: usize = 10_000;
/// Most parts of a `fingerprint`; more is refused (`too_many_fingerprint_parts`).
pub const MAX_FINGERPRINT_PARTS: usize = 64;

/// A count cap of an event (see [`MAX_EXCEPTIONS`], [`MAX_EVENT_FRAMES`], [`MAX_FINGERPRINT_PARTS`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    Exceptions,
    Frames,
    FingerprintParts,
}

impl Cap {
    /// The rejection reason: `too_many_exceptions`, `too_many_frames`, `too_many_fingerprint_parts`.
    pub fn reason(self) -> &'static str {
        match self {
            Cap::Exceptions => "too_many_exceptions",
            Cap::Frames => "too_many_frames",
            Cap::FingerprintParts => "too_many_fingerprint_parts",
        }
    }

    pub fn max(self) -> usize {
        match self {
            Cap::Exceptions => MAX_EXCEPTIONS,
            Cap::Frames => MAX_EVENT_FRAMES,
            Cap::FingerprintParts => MAX_FINGERPRINT_PARTS,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Cap::Exceptions => "exceptions",
            Cap::Frames => "stack frames",
            Cap::FingerprintParts => "fingerprint parts",
        }
    }
}

/// Why an event payload is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("event is {0} bytes, at most {MAX_EVENT_BYTES} are accepted")]
    TooLarge(usize),
    #[error("event is not valid json: {0}")]
    Json(String),
    #[error("{0}")]
    Field(crate::FieldError),
    #[error("event has {n} {}, at most {} are accepted", .cap.what(), .cap.max())]
    TooMany { cap: Cap, n: usize },
}

impl EventError {
    /// The rejection reason for outcomes and dead letters.
    pub fn reason(&self) -> &'static str {
        match self {
            EventError::TooLarge(_) => "too_large",
            EventError::Json(_) => "invalid_json",
            EventError::Field(_) => "invalid_field",
            EventError::TooMany { cap, .. } => cap.reason(),
        }
    }
}

/// A string field as SDKs send it: a string, or a number or bool to show as text; anything else
/// (objects, arrays) is skipped. Deserialised without building a `serde_json::Value`.
#[derive(Default)]
struct Text(Option<String>);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Text;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string, number or bool")
            }
            fn visit_str<E>(self, v: &str) -> Result<Text, E> {
                Ok(Text(Some(clip(v))))
            }
            fn visit_string<E>(self, mut v: String) -> Result<Text, E> {
                Ok(Text(Some(if v.len() > MAX_STRING_CHARS {
                    clip(&v)
                } else {
                    make_storable(&mut v);
                    v
                })))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Text, E> {
                Ok(Text(Some(v.to_string())))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Text, E> {
                Ok(Text(Some(v.to_string())))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Text, E> {
                Ok(Text(Some(v.to_string())))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Text, E> {
                Ok(Text(Some(v.to_string())))
            }
            fn visit_unit<E>(self) -> Result<Text, E> {
                Ok(Text(None))
            }
            fn visit_none<E>(self) -> Result<Text, E> {
                Ok(Text(None))
            }
            fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Text, D::Error> {
                d.deserialize_any(V)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut m: A) -> Result<Text, A::Error> {
                while m
                    .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                    .is_some()
                {}
                Ok(Text(None))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut s: A) -> Result<Text, A::Error> {
                while s.next_element::<serde::de::IgnoredAny>()?.is_some() {}
                Ok(Text(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// At most [`MAX_STRING_CHARS`] characters of `s`, storable.
fn clip(s: &str) -> String {
    let mut out = if s.len() <= MAX_STRING_CHARS {
        s.to_string()
    } else {
        s.chars().take(MAX_STRING_CHARS).collect()
    };
    make_storable(&mut out);
    out
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(default)]
    event_id: Option<serde_json::Value>,
    #[serde(default)]
    timestamp: Option<serde_json::Value>,
    #[serde(default)]
    platform: Option<serde_json::Value>,
    #[serde(default)]
    level: Option<serde_json::Value>,
    #[serde(default)]
    release: Option<serde_json::Value>,
    #[serde(default)]
    environment: Option<serde_json::Value>,
    #[serde(default)]
    message: Option<serde_json::Value>,
    #[serde(default)]
    logentry: Option<serde_json::Value>,
    #[serde(default)]
    exception: Option<RawExceptions>,
    #[serde(default)]
    threads: Option<RawExceptions>,
    #[serde(default)]
    tags: Option<serde_json::Value>,
    #[serde(default)]
    contexts: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    extra: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    fingerprint: Option<Vec<serde_json::Value>>,
}

/// `exception` is `{"values": [...]}` or, from old SDKs, the list itself. Read without serde's
/// untagged buffering, which copied whole stack traces into an intermediate tree. At most
/// [`MAX_EXCEPTIONS`] are kept; the rest are skipped unread and only counted, so memory stays bounded
/// whatever the list holds.
#[derive(Default)]
struct RawExceptions {
    values: Vec<RawException>,
    /// How many the list held, the skipped ones included.
    total: usize,
}

/// Reads a sequence of exceptions, keeping the first [`MAX_EXCEPTIONS`].
fn bounded_exceptions<'de, A: serde::de::SeqAccess<'de>>(
    mut s: A,
) -> Result<RawExceptions, A::Error> {
    let mut out = RawExceptions::default();
    loop {
        if out.values.len() < MAX_EXCEPTIONS {
            match s.next_element::<RawException>()? {
                Some(e) => out.values.push(e),
                None => break,
            }
        } else if s.next_element::<serde::de::IgnoredAny>()?.is_none() {
            break;
        }
        out.total += 1;
    }
    Ok(out)
}

/// `values` of an `exception` object, read with [`bounded_exceptions`].
struct ExceptionValues(RawExceptions);

impl<'de> Deserialize<'de> for ExceptionValues {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ExceptionValues;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of exceptions")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                s: A,
            ) -> Result<ExceptionValues, A::Error> {
                bounded_exceptions(s).map(ExceptionValues)
            }
            fn visit_unit<E>(self) -> Result<ExceptionValues, E> {
                Ok(ExceptionValues(RawExceptions::default()))
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for RawExceptions {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawExceptions;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("{\"values\": [...]} or a list of exceptions")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                s: A,
            ) -> Result<RawExceptions, A::Error> {
                bounded_exceptions(s)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<RawExceptions, A::Error> {
                let mut out = RawExceptions::default();
                while let Some(k) = m.next_key::<std::borrow::Cow<'de, str>>()? {
                    if k == "values" {
                        out = m.next_value::<ExceptionValues>()?.0;
                    } else {
                        m.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(out)
            }
            fn visit_unit<E>(self) -> Result<RawExceptions, E> {
                Ok(RawExceptions::default())
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
struct RawException {
    #[serde(default, rename = "type")]
    ty: Text,
    #[serde(default)]
    value: Text,
    #[serde(default)]
    module: Text,
    #[serde(default)]
    mechanism: Option<RawMechanism>,
    #[serde(default)]
    stacktrace: Option<RawStacktrace>,
}

#[derive(Deserialize)]
struct RawMechanism {
    #[serde(default, rename = "type")]
    ty: Text,
    #[serde(default)]
    handled: Option<bool>,
}

#[derive(Deserialize)]
struct RawStacktrace {
    #[serde(default)]
    frames: RawFrames,
}

/// The newest [`MAX_FRAMES`] frames of a stack trace (Sentry sends the oldest first), and how many
/// were sent: older ones are dropped as they are read, so memory stays bounded.
#[derive(Default)]
struct RawFrames {
    kept: VecDeque<RawFrame>,
    total: usize,
}

impl<'de> Deserialize<'de> for RawFrames {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawFrames;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a list of frames")
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut s: A,
            ) -> Result<RawFrames, A::Error> {
                let mut out = RawFrames::default();
                while let Some(frame) = s.next_element::<RawFrame>()? {
                    if out.kept.len() == MAX_FRAMES {
                        out.kept.pop_front();
                    }
                    out.kept.push_back(frame);
                    out.total += 1;
                }
                Ok(out)
            }
            fn visit_unit<E>(self) -> Result<RawFrames, E> {
                Ok(RawFrames::default())
            }
        }
        d.deserialize_any(V)
    }
}

/// Only these frame fields are read; `vars`, `context_line`, `pre_context` … are skipped unread.
#[derive(Deserialize)]
struct RawFrame {
    #[serde(default)]
    module: Text,
    #[serde(default)]
    function: Text,
    #[serde(default)]
    filename: Text,
    #[serde(default)]
    abs_path: Text,
    #[serde(default)]
    lineno: Option<serde_json::Value>,
    #[serde(default)]
    in_app: Option<bool>,
}

/// Longest string kept from any field; longer ones are cut (on a character boundary).
pub const MAX_STRING_CHARS: usize = 8192;
/// Most frames kept per exception (the newest ones).
pub const MAX_FRAMES: usize = 250;

/// A scalar as storable text of at most [`MAX_STRING_CHARS`] characters.
fn text(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) => Some(clip(s)),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn scalar(v: &serde_json::Value) -> bool {
    !matches!(
        v,
        serde_json::Value::Array(_) | serde_json::Value::Object(_)
    )
}

fn frames_of(stacktrace: Option<RawStacktrace>) -> Vec<StoredFrame> {
    stacktrace
        .map(|s| s.frames.kept)
        .unwrap_or_default()
        .into_iter()
        .map(|f| StoredFrame {
            module: f.module.0,
            function: f.function.0,
            filename: f.filename.0.or(f.abs_path.0),
            lineno: f.lineno.as_ref().and_then(serde_json::Value::as_u64),
            in_app: f.in_app,
        })
        .collect()
}

fn frames_sent(stacktrace: &Option<RawStacktrace>) -> usize {
    stacktrace.as_ref().map_or(0, |s| s.frames.total)
}

/// Normalises an event id: 32 hex digits, dashes allowed (a UUID), any case.
pub fn normalize_event_id(id: &str) -> Option<String> {
    let hex: String = id
        .chars()
        .filter(|c| *c != '-')
        .collect::<String>()
        .to_ascii_lowercase();
    (hex.len() == 32 && hex.bytes().all(|c| c.is_ascii_hexdigit())).then_some(hex)
}

/// Projects a Sentry event payload onto [`StoredEvent`]: only the whitelisted fields are read.
/// `fallback_id` (e.g. the envelope's `event_id`, or one the collector made) is used when the event
/// has none; `received_at` when it has no timestamp. Every string is storable ([`crate::text`]).
pub fn project(
    payload: &[u8],
    fallback_id: &str,
    received_at: DateTime<Utc>,
) -> Result<StoredEvent, EventError> {
    project_with(payload, fallback_id, received_at, Mode::Strict)
}

/// What a rejected event's dead letter may keep: the same whitelist projection as [`project`], made
/// leniently — a field that would have refused the event is replaced (an invalid id by `fallback_id`,
/// an invalid time by `received_at`, an unknown level by `error`) and lists over a cap are cut to it.
/// `None` when the payload is too large or not JSON: nothing structured can be kept then.
pub fn project_lenient(
    payload: &[u8],
    fallback_id: &str,
    received_at: DateTime<Utc>,
) -> Option<StoredEvent> {
    project_with(payload, fallback_id, received_at, Mode::Lenient).ok()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Strict,
    Lenient,
}

fn project_with(
    payload: &[u8],
    fallback_id: &str,
    received_at: DateTime<Utc>,
    mode: Mode,
) -> Result<StoredEvent, EventError> {
    if payload.len() > MAX_EVENT_BYTES {
        return Err(EventError::TooLarge(payload.len()));
    }
    let lenient = mode == Mode::Lenient;
    let raw = RawEvent::deserialize(&mut serde_json::Deserializer::from_slice(payload))
        .map_err(|e| EventError::Json(e.to_string()))?;
    let field = |f: &str, p: String| EventError::Field(crate::FieldError::new(f, p));
    let too_many = |cap: Cap, n: usize| {
        if n > cap.max() && !lenient {
            Err(EventError::TooMany { cap, n })
        } else {
            Ok(())
        }
    };
    let fallback = || normalize_event_id(fallback_id);
    let event_id = match text(raw.event_id.as_ref()) {
        Some(id) => match normalize_event_id(&id) {
            Some(id) => id,
            None if lenient => fallback().unwrap_or_default(),
            None => {
                return Err(field(
                    "event_id",
                    format!("must be 32 hex digits, got {id:?}"),
                ));
            }
        },
        None if lenient => fallback().unwrap_or_default(),
        None => fallback().ok_or_else(|| field("event_id", "missing".into()))?,
    };
    let timestamp = match raw.timestamp {
        Some(serde_json::Value::Number(n)) => n
            .as_f64()
            .and_then(|secs| DateTime::from_timestamp_micros((secs * 1e6) as i64))
            .ok_or_else(|| field("timestamp", format!("out of range: {n}"))),
        Some(serde_json::Value::String(s)) => DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .or_else(|_| {
                chrono::NaiveDateTime::parse_from_str(&s, "%Y-%m-%dT%H:%M:%S%.f")
                    .map(|t| t.and_utc())
            })
            .map_err(|_| field("timestamp", format!("not a time: {s:?}"))),
        _ => Ok(received_at),
    };
    let timestamp = match timestamp {
        Err(_) if lenient => received_at,
        t => t?,
    };
    let level = match text(raw.level.as_ref()).as_deref() {
        None => Level::Error,
        Some("fatal") | Some("critical") => Level::Fatal,
        Some("error") => Level::Error,
        Some("warning") | Some("warn") => Level::Warning,
        Some("info") | Some("log") => Level::Info,
        Some("debug") => Level::Debug,
        Some(_) if lenient => Level::Error,
        Some(other) => return Err(field("level", format!("unknown level {other:?}"))),
    };
    let message = match (&raw.logentry, &raw.message) {
        (Some(serde_json::Value::Object(l)), _) => {
            text(l.get("formatted")).or_else(|| text(l.get("message")))
        }
        (_, Some(serde_json::Value::Object(m))) => {
            text(m.get("formatted")).or_else(|| text(m.get("message")))
        }
        (_, m) => text(m.as_ref()),
    };
    let raw_exceptions = raw.exception.unwrap_or_default();
    too_many(Cap::Exceptions, raw_exceptions.total)?;
    let frames: usize = raw_exceptions
        .values
        .iter()
        .map(|e| frames_sent(&e.stacktrace))
        .sum();
    too_many(Cap::Frames, frames)?;
    let mut exceptions: Vec<StoredException> = raw_exceptions
        .values
        .into_iter()
        .map(|e| StoredException {
            ty: e.ty.0,
            value: e.value.0,
            module: e.module.0,
            mechanism: e.mechanism.map(|m| Mechanism {
                ty: m.ty.0.unwrap_or_else(|| "generic".into()),
                handled: m.handled,
            }),
            frames: frames_of(e.stacktrace),
        })
        .collect();
    // SDKs that attach a stack trace to an error without one (sentry-rust's `attach_stacktrace`) put
    // it on the current thread: use it for the raised exception, as Sentry does for grouping.
    if let (Some(threads), Some(raised)) = (raw.threads, exceptions.last_mut())
        && raised.frames.is_empty()
        && let Some(thread) = threads.values.into_iter().find(|t| t.stacktrace.is_some())
    {
        too_many(Cap::Frames, frames + frames_sent(&thread.stacktrace))?;
        raised.frames = frames_of(thread.stacktrace);
    }
    let mut tags = BTreeMap::new();
    match raw.tags {
        Some(serde_json::Value::Object(map)) => {
            for (k, v) in map {
                if let Some(v) = text(Some(&v)) {
                    tags.insert(clip(&k), v);
                }
            }
        }
        Some(serde_json::Value::Array(pairs)) => {
            for p in pairs {
                if let serde_json::Value::Array(kv) = p
                    && let (Some(k), Some(v)) = (text(kv.first()), text(kv.get(1)))
                {
                    tags.insert(k, v);
                }
            }
        }
        _ => {}
    }
    let mut contexts = BTreeMap::new();
    for (name, ctx) in raw.contexts.unwrap_or_default() {
        if !matches!(name.as_str(), "os" | "runtime" | "app") {
            continue;
        }
        if let serde_json::Value::Object(map) = ctx {
            let kept: BTreeMap<String, serde_json::Value> = map
                .into_iter()
                .filter(|(_, v)| scalar(v))
                .map(|(k, mut v)| {
                    make_value_storable(&mut v);
                    (storable(&k), v)
                })
                .collect();
            contexts.insert(name, kept);
        }
    }
    let extra = raw
        .extra
        .unwrap_or_default()
        .into_iter()
        .map(|(k, mut v)| {
            make_value_storable(&mut v);
            (storable(&k), v)
        })
        .collect();
    let fingerprint = match raw.fingerprint {
        Some(parts) => {
            too_many(Cap::FingerprintParts, parts.len())?;
            Some(
                parts
                    .iter()
                    .take(MAX_FINGERPRINT_PARTS)
                    .filter_map(|v| text(Some(v)))
                    .collect(),
            )
        }
        None => None,
    };
    Ok(StoredEvent {
        event_id,
        timestamp,
        platform: text(raw.platform.as_ref()),
        level,
        release: text(raw.release.as_ref()),
        environment: text(raw.environment.as_ref()),
        message,
        exceptions,
        tags,
        contexts,
        extra,
        fingerprint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projects_only_the_whitelist() {
        let payload = br#"{
            "event_id": "9EC79C33-EC99-42AB-8353-589FCB2E04DC",
            "timestamp": 1764400000.5, "platform": "python", "level": "warning",
            "release": "app@1.2.3", "environment": "prod", "server_name": "db01.internal",
            "user": {"email": "alice@example.com"}, "request": {"url": "https://x/?token=1"},
            "breadcrumbs": {"values": [{"message": "secret crumb"}]},
            "logentry": {"message": "failed %s", "formatted": "failed 42"},
            "exception": {"values": [{"type": "ValueError", "value": "bad", "module": "builtins",
                "mechanism": {"type": "generic", "handled": false},
                "stacktrace": {"frames": [{"module": "app.views", "function": "get", "abs_path": "/srv/app/views.py",
                    "lineno": 12, "in_app": true, "vars": {"password": "hunter2"}}]}}]},
            "tags": {"server_id": "s1", "n": 5}, "contexts": {"os": {"name": "Linux", "nested": {"x": 1}}, "device": {"model": "x"}},
            "extra": {"k": "v"}, "fingerprint": ["{{ default }}", "db"]
        }"#;
        let e = project(payload, "", Utc::now()).unwrap();
        assert_eq!(e.event_id, "9ec79c33ec9942ab8353589fcb2e04dc");
        assert_eq!(e.timestamp.timestamp_millis(), 1_764_400_000_500);
        assert_eq!(e.level, Level::Warning);
        assert_eq!(e.message.as_deref(), Some("failed 42"));
        assert_eq!(
            e.exceptions[0].frames[0].filename.as_deref(),
            Some("/srv/app/views.py")
        );
        assert_eq!(e.tags["n"], "5");
        assert_eq!(e.contexts.len(), 1);
        assert!(!e.contexts["os"].contains_key("nested"));
        let stored = serde_json::to_string(&e).unwrap();
        for gone in [
            "alice@example.com",
            "db01.internal",
            "secret crumb",
            "hunter2",
            "token=1",
        ] {
            assert!(!stored.contains(gone), "{gone} survived projection");
        }
    }

    #[test]
    fn bad_events() {
        assert!(matches!(
            project(b"{", "", Utc::now()),
            Err(EventError::Json(_))
        ));
        assert!(matches!(
            project(br#"{"event_id":"xyz"}"#, "", Utc::now()),
            Err(EventError::Field(_))
        ));
        assert!(matches!(
            project(
                br#"{"level":"loud"}"#,
                "9ec79c33ec9942ab8353589fcb2e04dc",
                Utc::now()
            ),
            Err(EventError::Field(_))
        ));
        assert!(matches!(
            project(&vec![b' '; MAX_EVENT_BYTES + 1], "", Utc::now()),
            Err(EventError::TooLarge(_))
        ));
        let e = project(
            br#"{"message":"hi","exception":[{"type":"E"}]}"#,
            "9ec79c33ec9942ab8353589fcb2e04dc",
            Utc::now(),
        )
        .unwrap();
        assert_eq!(e.exceptions.len(), 1);
    }

    const ID: &str = "9ec79c33ec9942ab8353589fcb2e04dc";

    fn exceptions(n: usize, frames: usize) -> String {
        let frame = r#"{"module":"m","function":"f","in_app":true}"#;
        let frames = vec![frame; frames].join(",");
        let one = format!(r#"{{"type":"E","stacktrace":{{"frames":[{frames}]}}}}"#);
        format!(
            r#"{{"exception":{{"values":[{}]}}}}"#,
            vec![one; n].join(",")
        )
    }

    #[test]
    fn caps_refuse_with_their_reason() {
        let at = Utc::now();
        let ok = project(exceptions(MAX_EXCEPTIONS, 10).as_bytes(), ID, at).unwrap();
        assert_eq!(ok.exceptions.len(), MAX_EXCEPTIONS);
        let err = project(exceptions(MAX_EXCEPTIONS + 1, 1).as_bytes(), ID, at).unwrap_err();
        assert_eq!(err.reason(), "too_many_exceptions");
        assert_eq!(
            err.to_string(),
            "event has 65 exceptions, at most 64 are accepted"
        );
        // Frames per exception are trimmed to the newest MAX_FRAMES; frames per event are refused.
        let trimmed = project(exceptions(1, MAX_FRAMES + 5).as_bytes(), ID, at).unwrap();
        assert_eq!(trimmed.exceptions[0].frames.len(), MAX_FRAMES);
        let err = project(exceptions(41, 250).as_bytes(), ID, at).unwrap_err();
        assert_eq!(err.reason(), "too_many_frames");
        let parts = vec!["\"{{default}}\""; MAX_FINGERPRINT_PARTS + 1].join(",");
        let err =
            project(format!(r#"{{"fingerprint":[{parts}]}}"#).as_bytes(), ID, at).unwrap_err();
        assert_eq!(err.reason(), "too_many_fingerprint_parts");
        // The list form of `exception` is capped the same way.
        let list = format!("{{\"exception\":[{}]}}", vec!["{}"; 100].join(","));
        assert_eq!(
            project(list.as_bytes(), ID, at).unwrap_err().reason(),
            "too_many_exceptions"
        );
    }

    #[test]
    fn nul_never_leaves_the_projection() {
        let payload = br#"{"release":"r\u0000x","message":"a\u0000","tags":{"k\u0000":"v\u0000"},
            "contexts":{"os":{"n\u0000":"v\u0000"}},"extra":{"e":{"deep":["\u0000"]}},
            "fingerprint":["\u0000"],
            "exception":{"values":[{"type":"E\u0000","stacktrace":{"frames":[{"function":"f\u0000"}]}}]}}"#;
        let e = project(payload, ID, Utc::now()).unwrap();
        assert_eq!(e.release.as_deref(), Some("r\u{FFFD}x"));
        let stored = serde_json::to_string(&e).unwrap();
        assert!(!stored.contains("\\u0000"), "{stored}");
        assert!(!stored.contains('\0'));
    }

    #[test]
    fn lenient_projection_keeps_only_the_whitelist() {
        let payload = br#"{"event_id":"nope","level":"loud","timestamp":"yesterday",
            "server_name":"db01.corp.internal","user":{"username":"alice_smith","id":"u-77"},
            "request":{"url":"https://x/?q=1"},"breadcrumbs":[{"message":"crumb-canary"}],
            "message":"hello","exception":[{"type":"E"}]}"#;
        let at = Utc::now();
        assert!(project(payload, ID, at).is_err());
        let e = project_lenient(payload, ID, at).unwrap();
        assert_eq!(
            (e.event_id.as_str(), e.level, e.timestamp),
            (ID, Level::Error, at)
        );
        assert_eq!(e.message.as_deref(), Some("hello"));
        let kept = serde_json::to_string(&e).unwrap();
        for gone in ["db01", "alice_smith", "u-77", "q=1", "crumb-canary"] {
            assert!(!kept.contains(gone), "{gone} in {kept}");
        }
        let capped = project_lenient(exceptions(MAX_EXCEPTIONS + 3, 1).as_bytes(), ID, at).unwrap();
        assert_eq!(capped.exceptions.len(), MAX_EXCEPTIONS);
        assert!(project_lenient(b"{not json", ID, at).is_none());
    }
}
