//! The mobile performance channel: `POST /v1/mobile/metrics`, in the shape Mattermost's Android app
//! (v1.20) sends.
//!
//! ```json
//! {"data": {"trace_events": [{"cat": "react-native", "ph": "X", "name": "team:switch",
//!                             "ts": 1764400000000000, "dur": 412000, "pid": 0, "tid": 5,
//!                             "args": {"instanceKey": 0, "tag": "team:switch"}}],
//!           "device_info": {"api_level": 33, "brand": "google", "model": "Pixel 7", "version": "1.20.0"}}}
//! ```
//!
//! [`Payload`] builds a body (the agent's mobile helper); [`parse_batch`] judges one on the collector:
//! the batch as a whole (size, JSON shape, event count) and then every trace event alone, so one bad
//! event costs only itself. `ts` and `dur` are microseconds (Chrome trace format).

use crate::FieldError;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// Largest body accepted, as received (after any content decoding).
pub const MAX_BODY_BYTES: usize = 1 << 20;
/// Most trace events in one batch.
pub const MAX_EVENTS: usize = 1000;
/// Longest duration accepted: 10 minutes.
pub const MAX_DURATION_US: i64 = 10 * 60 * 1_000_000;
/// Oldest event accepted, relative to receipt: 7 days.
pub const MAX_AGE_US: i64 = 7 * 86_400 * 1_000_000;
/// Furthest into the future an event may be, relative to receipt: 1 day.
pub const MAX_AHEAD_US: i64 = 86_400 * 1_000_000;
/// Longest string value kept in `device_info`.
pub const MAX_STRING_LEN: usize = 128;

macro_rules! trace_names {
    ($($variant:ident = $code:literal => $name:literal,)*) => {
        /// The trace names the app sends. The numeric code is how stores keep them; never reuse one.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum TraceName { $($variant,)* }

        impl TraceName {
            /// Every name, in code order.
            pub const ALL: &'static [TraceName] = &[$(TraceName::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(TraceName::$variant => $name,)* }
            }

            pub fn parse(s: &str) -> Option<TraceName> {
                match s { $($name => Some(TraceName::$variant),)* _ => None }
            }

            /// The stable storage code.
            pub fn code(self) -> i16 {
                match self { $(TraceName::$variant => $code,)* }
            }

            pub fn from_code(code: i16) -> Option<TraceName> {
                match code { $($code => Some(TraceName::$variant),)* _ => None }
            }
        }
    };
}

trace_names! {
    StartOverall = 1 => "start:overall",
    StartProcessPackages = 2 => "start:process_packages",
    StartContentAppeared = 3 => "start:content_appeared",
    StartSelectServerScreen = 4 => "start:select_server_screen",
    StartChannelScreen = 5 => "start:channel_screen",
    TeamSwitch = 6 => "team:switch",
    ChannelLoading = 7 => "channel:loading",
    ChannelSwitchLoaded = 8 => "channel:switch_loaded",
    ChannelSwitchInitial = 9 => "channel:switch_initial",
    ChannelCloseDrawer = 10 => "channel:close_drawer",
    ChannelOpenDrawer = 11 => "channel:open_drawer",
    PostsLoading = 12 => "posts:loading",
    PostListThread = 13 => "post_list:thread",
    PostListPermalink = 14 => "post_list:permalink",
}

impl std::fmt::Display for TraceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for TraceName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TraceName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        TraceName::parse(&s)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown trace name {s:?}")))
    }
}

/// A whole request body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payload {
    pub data: PayloadData,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PayloadData {
    pub trace_events: Vec<TraceEvent>,
    pub device_info: DeviceInfo,
}

impl Payload {
    pub fn new(device_info: DeviceInfo, trace_events: Vec<TraceEvent>) -> Self {
        Payload {
            data: PayloadData {
                trace_events,
                device_info,
            },
        }
    }
}

/// One Chrome-trace "complete" event, as the app sends it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceEvent {
    pub cat: String,
    pub ph: String,
    pub name: String,
    /// Start, Unix microseconds.
    pub ts: i64,
    /// Duration, microseconds.
    pub dur: i64,
    pub pid: i64,
    pub tid: i64,
    pub args: TraceArgs,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceArgs {
    #[serde(rename = "instanceKey")]
    pub instance_key: i64,
    pub tag: String,
}

impl TraceEvent {
    /// A measurement of `name` that started at `ts_us` and took `dur_us`, shaped as the app shapes it.
    pub fn complete(name: TraceName, ts_us: i64, dur_us: i64) -> Self {
        TraceEvent {
            cat: "react-native".into(),
            ph: "X".into(),
            name: name.as_str().into(),
            ts: ts_us,
            dur: dur_us,
            pid: 0,
            tid: 0,
            args: TraceArgs {
                instance_key: 0,
                tag: name.as_str().into(),
            },
        }
    }
}

/// The app's `device_info`. Every field is optional; `version` is also read as `app_version`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeviceInfo {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_level: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_number: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bundle_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub brand: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// The model identifier (`iPhone14,2`, `panther`), not an identity.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_locale: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_type: Option<String>,
    /// The device's identity. The collector replaces it by a keyed hash before storing anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_unique_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub height: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_emulator: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_tablet: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manufacturer: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_memory: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", alias = "app_version")]
    pub version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub width: Option<f64>,
}

impl DeviceInfo {
    /// Copies the known keys of `map` with the right types. Unknown keys, and known keys whose value
    /// has the wrong type or is too long, are left out and named in the result.
    pub fn from_map(map: &Map<String, Value>) -> (DeviceInfo, DroppedKeys) {
        let mut info = DeviceInfo::default();
        let mut dropped = DroppedKeys::default();
        for (key, value) in map {
            if value.is_null() {
                continue;
            }
            let ok = match key.as_str() {
                "api_level" => set_int(&mut info.api_level, value),
                "build_number" => set_str(&mut info.build_number, value),
                "bundle_id" => set_str(&mut info.bundle_id, value),
                "brand" => set_str(&mut info.brand, value),
                "country" => set_str(&mut info.country, value),
                "device_id" => set_str(&mut info.device_id, value),
                "device_locale" => set_str(&mut info.device_locale, value),
                "device_type" => set_str(&mut info.device_type, value),
                "device_unique_id" => set_str(&mut info.device_unique_id, value),
                "height" => set_num(&mut info.height, value),
                "is_emulator" => set_bool(&mut info.is_emulator, value),
                "is_tablet" => set_bool(&mut info.is_tablet, value),
                "manufacturer" => set_str(&mut info.manufacturer, value),
                "max_memory" => set_num(&mut info.max_memory, value),
                "model" => set_str(&mut info.model, value),
                "server_version" => set_str(&mut info.server_version, value),
                "system_name" => set_str(&mut info.system_name, value),
                "system_version" => set_str(&mut info.system_version, value),
                "timezone" => set_str(&mut info.timezone, value),
                // `version` wins over `app_version` when both are sent.
                "version" => set_str(&mut info.version, value),
                "app_version" => {
                    if map.contains_key("version") {
                        true
                    } else {
                        set_str(&mut info.version, value)
                    }
                }
                "width" => set_num(&mut info.width, value),
                _ => {
                    dropped.unknown += 1;
                    continue;
                }
            };
            if !ok {
                dropped.invalid.push(key.clone());
            }
        }
        (info, dropped)
    }
}

/// `device_info` keys left out of a batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DroppedKeys {
    /// Keys that are not [`DeviceInfo`] fields (the list in `docs/protocol.md`).
    pub unknown: usize,
    /// Known keys whose value had the wrong type or was longer than [`MAX_STRING_LEN`].
    pub invalid: Vec<String>,
}

fn set_str(slot: &mut Option<String>, v: &Value) -> bool {
    match v.as_str() {
        Some(s) if s.len() <= MAX_STRING_LEN => {
            *slot = Some(crate::text::storable(s));
            true
        }
        _ => false,
    }
}

fn set_int(slot: &mut Option<i64>, v: &Value) -> bool {
    match v.as_i64() {
        Some(n) => {
            *slot = Some(n);
            true
        }
        None => false,
    }
}

fn set_num(slot: &mut Option<f64>, v: &Value) -> bool {
    match v.as_f64() {
        Some(n) if n.is_finite() => {
            *slot = Some(n);
            true
        }
        _ => false,
    }
}

fn set_bool(slot: &mut Option<bool>, v: &Value) -> bool {
    match v.as_bool() {
        Some(b) => {
            *slot = Some(b);
            true
        }
        None => false,
    }
}

/// Why a whole batch was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BatchError {
    /// Over [`MAX_BODY_BYTES`] or [`MAX_EVENTS`]: `413`.
    #[error("{0}")]
    TooLarge(String),
    /// Not JSON, or not the payload's shape: `400`.
    #[error(transparent)]
    Invalid(#[from] FieldError),
}

impl BatchError {
    /// The outcome reason for metrics and dead letters.
    pub fn reason(&self) -> String {
        match self {
            BatchError::TooLarge(_) => "too_large".into(),
            BatchError::Invalid(e) => format!("invalid_{}", e.field.replace('.', "_")),
        }
    }
}

/// Why one trace event was rejected. [`EventRejection::as_str`] is the `reason` of the answer and of
/// the outcome metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventRejection {
    /// Not an object, a missing field or a field of the wrong type.
    InvalidEvent,
    UnknownTraceName,
    /// `ph` other than `X`: only complete events carry a duration.
    UnsupportedPhase,
    /// `dur` ≤ 0.
    DurationNotPositive,
    /// `dur` over 10 minutes.
    DurationTooLong,
    /// `ts` over 7 days before receipt.
    TimestampTooOld,
    /// `ts` over 1 day after receipt.
    TimestampInFuture,
}

impl EventRejection {
    pub fn as_str(self) -> &'static str {
        match self {
            EventRejection::InvalidEvent => "invalid_event",
            EventRejection::UnknownTraceName => "unknown_trace_name",
            EventRejection::UnsupportedPhase => "unsupported_phase",
            EventRejection::DurationNotPositive => "duration_not_positive",
            EventRejection::DurationTooLong => "duration_too_long",
            EventRejection::TimestampTooOld => "timestamp_too_old",
            EventRejection::TimestampInFuture => "timestamp_in_future",
        }
    }
}

/// A trace event that passed every rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceRecord {
    pub name: TraceName,
    /// Start, Unix microseconds.
    pub ts_us: i64,
    /// Duration in microseconds, `1..=MAX_DURATION_US`.
    pub dur_us: i64,
}

/// A rejected trace event: its index in `trace_events`, why, and its raw JSON (for the dead letter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RejectedEvent {
    pub index: usize,
    pub reason: EventRejection,
    /// What exactly was wrong, for humans.
    pub detail: String,
    pub raw: String,
}

/// One rejected trace event in the answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectedEntry {
    pub index: usize,
    /// An [`EventRejection`] as a string.
    pub reason: String,
    pub message: String,
}

/// The answer to a batch: `{"accepted": N, "rejected": [{"index": I, "reason": "…", "message": "…"}]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsResponse {
    pub accepted: usize,
    pub rejected: Vec<RejectedEntry>,
}

/// A judged batch.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub device: DeviceInfo,
    pub dropped: DroppedKeys,
    pub accepted: Vec<TraceRecord>,
    pub rejected: Vec<RejectedEvent>,
}

#[derive(Deserialize)]
struct RawPayload<'a> {
    #[serde(borrow)]
    data: RawData<'a>,
}

#[derive(Deserialize)]
struct RawData<'a> {
    #[serde(borrow)]
    trace_events: Vec<&'a RawValue>,
    #[serde(default)]
    device_info: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
struct RawEvent<'a> {
    #[serde(borrow)]
    name: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    ph: Option<std::borrow::Cow<'a, str>>,
    ts: Micros,
    dur: Micros,
}

/// A microsecond number: an integer, or a float as Chrome traces allow (rounded).
struct Micros(i64);

impl<'de> Deserialize<'de> for Micros {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Micros;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number of microseconds")
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Micros, E> {
                Ok(Micros(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Micros, E> {
                i64::try_from(v)
                    .map(Micros)
                    .map_err(|_| E::custom("number out of range"))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Micros, E> {
                if v.is_finite() && v.abs() < 9.0e18 {
                    Ok(Micros(v.round() as i64))
                } else {
                    Err(E::custom("number out of range"))
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Trace event keys a dead letter keeps (scalars only): what an accepted event is made of.
const TRACE_EVENT_KEYS: [&str; 7] = ["cat", "ph", "name", "ts", "dur", "pid", "tid"];
/// Trace events shown in the dead letter of a refused batch.
const DEAD_LETTER_EVENTS: usize = 5;

fn trace_event_view(v: &Value) -> Value {
    let Value::Object(map) = v else {
        return Value::String(format!("<{}>", json_kind(v)));
    };
    let kept: Map<String, Value> = TRACE_EVENT_KEYS
        .iter()
        .filter_map(|k| {
            let v = match map.get(*k)? {
                Value::String(s) => Value::String(crate::text::storable(
                    &s.chars().take(MAX_STRING_LEN).collect::<String>(),
                )),
                v @ (Value::Number(_) | Value::Bool(_) | Value::Null) => v.clone(),
                other => Value::String(format!("<{}>", json_kind(other))),
            };
            Some((k.to_string(), v))
        })
        .collect();
    Value::Object(kept)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// What a dead letter may keep of a rejected trace event: its `cat`, `ph`, `name`, `ts`, `dur`, `pid`,
/// `tid` (the fields an accepted event is made of; `args` and anything else are dropped), as JSON.
/// `None` when it is not JSON.
pub fn trace_event_dead_letter(raw: &str) -> Option<String> {
    let v: Value = serde_json::from_str(raw).ok()?;
    Some(trace_event_view(&v).to_string())
}

/// What a dead letter may keep of a batch refused whole: the number of trace events and the first
/// few as [`trace_event_dead_letter`] keeps them, and the `device_info` keys an accepted batch keeps
/// (never `device_unique_id`), as JSON. `None` when the body is not JSON.
pub fn batch_dead_letter(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let data = v.get("data");
    let mut view = Map::new();
    match data.and_then(|d| d.get("trace_events")) {
        Some(Value::Array(events)) => {
            view.insert("trace_events_count".into(), events.len().into());
            let shown = events.iter().take(DEAD_LETTER_EVENTS).map(trace_event_view);
            view.insert("trace_events".into(), Value::Array(shown.collect()));
        }
        Some(other) => {
            view.insert(
                "trace_events".into(),
                format!("<{}>", json_kind(other)).into(),
            );
        }
        None => {}
    }
    if let Some(Value::Object(map)) = data.and_then(|d| d.get("device_info")) {
        let (mut device, _) = DeviceInfo::from_map(map);
        device.device_unique_id = None;
        view.insert(
            "device_info".into(),
            serde_json::to_value(device).unwrap_or_default(),
        );
    }
    if data.is_none() {
        view.insert("data".into(), "<missing>".into());
    }
    Some(Value::Object(view).to_string())
}

/// Judges a request body received at `now`: the batch as a whole, then each trace event alone.
pub fn parse_batch(body: &[u8], now: DateTime<Utc>) -> Result<Batch, BatchError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(BatchError::TooLarge(format!(
            "body is {} bytes; at most {MAX_BODY_BYTES} are accepted",
            body.len()
        )));
    }
    let raw: RawPayload<'_> = serde_json::from_slice(body).map_err(|e| {
        FieldError::new(
            "body",
            format!("not a mobile metrics payload ({e}); expected {{\"data\": {{\"trace_events\": [...], \"device_info\": {{...}}}}}}"),
        )
    })?;
    let events = raw.data.trace_events;
    if events.len() > MAX_EVENTS {
        return Err(BatchError::TooLarge(format!(
            "batch has {} trace events; at most {MAX_EVENTS} are accepted",
            events.len()
        )));
    }
    let (device, dropped) = match &raw.data.device_info {
        Some(map) => DeviceInfo::from_map(map),
        None => Default::default(),
    };
    let now_us = now.timestamp_micros();
    let mut accepted = Vec::with_capacity(events.len());
    let mut rejected = Vec::new();
    for (index, event) in events.into_iter().enumerate() {
        match judge(event, now_us) {
            Ok(record) => accepted.push(record),
            Err((reason, detail)) => rejected.push(RejectedEvent {
                index,
                reason,
                detail,
                raw: event.get().to_owned(),
            }),
        }
    }
    Ok(Batch {
        device,
        dropped,
        accepted,
        rejected,
    })
}

fn judge(event: &RawValue, now_us: i64) -> Result<TraceRecord, (EventRejection, String)> {
    let e: RawEvent<'_> = serde_json::from_str(event.get())
        .map_err(|err| (EventRejection::InvalidEvent, err.to_string()))?;
    let name = TraceName::parse(&e.name).ok_or_else(|| {
        (
            EventRejection::UnknownTraceName,
            format!("{:?} is not a known trace name", e.name),
        )
    })?;
    if let Some(ph) = &e.ph
        && ph != "X"
    {
        return Err((
            EventRejection::UnsupportedPhase,
            format!("ph {ph:?}: only complete events (\"X\") carry a duration"),
        ));
    }
    let (ts, dur) = (e.ts.0, e.dur.0);
    if dur <= 0 {
        return Err((
            EventRejection::DurationNotPositive,
            format!("dur {dur} is not positive"),
        ));
    }
    if dur > MAX_DURATION_US {
        return Err((
            EventRejection::DurationTooLong,
            format!("dur {dur} µs is over 10 minutes"),
        ));
    }
    if ts < now_us.saturating_sub(MAX_AGE_US) {
        return Err((
            EventRejection::TimestampTooOld,
            format!("ts {ts} is more than 7 days before receipt"),
        ));
    }
    if ts > now_us.saturating_add(MAX_AHEAD_US) {
        return Err((
            EventRejection::TimestampInFuture,
            format!("ts {ts} is more than 1 day after receipt"),
        ));
    }
    Ok(TraceRecord {
        name,
        ts_us: ts,
        dur_us: dur,
    })
}

impl DeviceInfo {
    /// The value a report groups this device under for `dim` (`unknown` when not sent).
    pub fn dimension(&self, dim: Dimension) -> String {
        fn or_unknown(v: &Option<String>) -> String {
            v.as_deref()
                .filter(|s| !s.is_empty())
                .unwrap_or("unknown")
                .to_owned()
        }
        match dim {
            Dimension::All => String::new(),
            Dimension::AppVersion => or_unknown(&self.version),
            Dimension::OsVersion => match (&self.system_name, &self.system_version) {
                (Some(n), Some(v)) => format!("{n} {v}"),
                (None, Some(v)) => v.clone(),
                _ => "unknown".into(),
            },
            Dimension::Model => or_unknown(&self.model),
            Dimension::Manufacturer => or_unknown(if self.manufacturer.is_some() {
                &self.manufacturer
            } else {
                &self.brand
            }),
            Dimension::Tablet => match self.is_tablet {
                Some(true) => "tablet".into(),
                Some(false) => "phone".into(),
                None => "unknown".into(),
            },
            Dimension::Country => or_unknown(&self.country),
            Dimension::ServerVersion => or_unknown(&self.server_version),
        }
    }
}

/// What a performance report can group by. [`Dimension::All`] is the ungrouped total.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    All,
    AppVersion,
    OsVersion,
    Model,
    Manufacturer,
    Tablet,
    Country,
    ServerVersion,
}

impl Dimension {
    pub const ALL: &'static [Dimension] = &[
        Dimension::All,
        Dimension::AppVersion,
        Dimension::OsVersion,
        Dimension::Model,
        Dimension::Manufacturer,
        Dimension::Tablet,
        Dimension::Country,
        Dimension::ServerVersion,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::All => "all",
            Dimension::AppVersion => "app_version",
            Dimension::OsVersion => "os_version",
            Dimension::Model => "model",
            Dimension::Manufacturer => "manufacturer",
            Dimension::Tablet => "tablet",
            Dimension::Country => "country",
            Dimension::ServerVersion => "server_version",
        }
    }

    pub fn parse(s: &str) -> Option<Dimension> {
        Dimension::ALL.iter().copied().find(|d| d.as_str() == s)
    }

    /// The stable storage code.
    pub fn code(self) -> i16 {
        self as i16
    }

    pub fn from_code(code: i16) -> Option<Dimension> {
        Dimension::ALL.get(usize::try_from(code).ok()?).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.timestamp_micros(1_764_400_000_000_000).unwrap()
    }

    const SPEC_BODY: &str = r#"{"data": {"trace_events": [ {"cat": "react-native", "ph": "X", "name": "team:switch",
                             "ts": 1764400000000000, "dur": 412000, "pid": 0, "tid": 5,
                             "args": {"instanceKey": 0, "tag": "team:switch"}} ],
          "device_info": {"api_level": 33, "brand": "google", "model": "Pixel 7", "version": "1.20.0"}}}"#;

    #[test]
    fn the_spec_body_is_accepted() {
        let b = parse_batch(SPEC_BODY.as_bytes(), now()).unwrap();
        assert_eq!(
            b.accepted,
            vec![TraceRecord {
                name: TraceName::TeamSwitch,
                ts_us: 1_764_400_000_000_000,
                dur_us: 412_000
            }]
        );
        assert!(b.rejected.is_empty());
        assert_eq!(b.device.model.as_deref(), Some("Pixel 7"));
        assert_eq!(b.device.api_level, Some(33));
        assert_eq!(b.device.version.as_deref(), Some("1.20.0"));
        assert_eq!(b.dropped, DroppedKeys::default());
    }

    #[test]
    fn a_built_payload_parses_back() {
        let info = DeviceInfo {
            version: Some("2.1.0".into()),
            is_tablet: Some(true),
            ..Default::default()
        };
        let p = Payload::new(
            info.clone(),
            vec![TraceEvent::complete(
                TraceName::PostsLoading,
                1_764_400_000_000_000,
                5,
            )],
        );
        let body = serde_json::to_vec(&p).unwrap();
        let b = parse_batch(&body, now()).unwrap();
        assert_eq!(b.device, info);
        assert_eq!(b.accepted[0].name, TraceName::PostsLoading);
        let back: Payload = serde_json::from_slice(&body).unwrap();
        assert_eq!(back, p);
    }

    #[test]
    fn app_version_is_read_as_version() {
        let body = br#"{"data":{"trace_events":[],"device_info":{"app_version":"1.2.3"}}}"#;
        assert_eq!(
            parse_batch(body, now()).unwrap().device.version.as_deref(),
            Some("1.2.3")
        );
        let both = br#"{"data":{"trace_events":[],"device_info":{"app_version":"1.2.3","version":"9.9.9"}}}"#;
        assert_eq!(
            parse_batch(both, now()).unwrap().device.version.as_deref(),
            Some("9.9.9")
        );
    }

    #[test]
    fn each_event_is_judged_alone() {
        let ts = now().timestamp_micros();
        let day = 86_400_000_000i64;
        let events = [
            format!(r#"{{"name":"team:switch","ts":{ts},"dur":1000}}"#),
            format!(r#"{{"name":"team:jump","ts":{ts},"dur":1000}}"#),
            format!(r#"{{"name":"team:switch","ts":{ts},"dur":0}}"#),
            format!(r#"{{"name":"team:switch","ts":{ts},"dur":-5}}"#),
            format!(r#"{{"name":"team:switch","ts":{ts},"dur":600000001}}"#),
            format!(
                r#"{{"name":"team:switch","ts":{},"dur":1000}}"#,
                ts - 7 * day - 1
            ),
            format!(
                r#"{{"name":"team:switch","ts":{},"dur":1000}}"#,
                ts + day + 1
            ),
            format!(r#"{{"name":"team:switch","ts":"{ts}","dur":1000}}"#),
            r#""not an object""#.to_string(),
            format!(r#"{{"name":"team:switch","ts":{ts}}}"#),
            format!(r#"{{"name":"team:switch","ph":"B","ts":{ts},"dur":1000}}"#),
            format!(
                r#"{{"name":"channel:loading","ts":{}.4,"dur":600000000}}"#,
                ts - 7 * day
            ),
            format!(r#"{{"name":7,"ts":{ts},"dur":1000}}"#),
        ];
        let body = format!(
            r#"{{"data":{{"trace_events":[{}],"device_info":{{}}}}}}"#,
            events.join(",")
        );
        let b = parse_batch(body.as_bytes(), now()).unwrap();
        assert_eq!(b.accepted.len(), 2);
        assert_eq!(b.accepted[1].dur_us, MAX_DURATION_US);
        let reasons: Vec<(usize, &str)> = b
            .rejected
            .iter()
            .map(|r| (r.index, r.reason.as_str()))
            .collect();
        assert_eq!(
            reasons,
            vec![
                (1, "unknown_trace_name"),
                (2, "duration_not_positive"),
                (3, "duration_not_positive"),
                (4, "duration_too_long"),
                (5, "timestamp_too_old"),
                (6, "timestamp_in_future"),
                (7, "invalid_event"),
                (8, "invalid_event"),
                (9, "invalid_event"),
                (10, "unsupported_phase"),
                (12, "invalid_event"),
            ]
        );
        assert_eq!(b.rejected[1].raw, events[2]);
    }

    #[test]
    fn device_info_keys_are_typed_and_unknown_ones_dropped() {
        let long = "x".repeat(MAX_STRING_LEN + 1);
        let body = format!(
            r#"{{"data":{{"trace_events":[],"device_info":{{"model":"Pixel 7","is_tablet":"yes","api_level":33.5,
               "favourite_colour":"blue","imei":"3530","brand":"{long}","width":411.4,"is_emulator":true,"country":null}}}}}}"#
        );
        let b = parse_batch(body.as_bytes(), now()).unwrap();
        assert_eq!(b.dropped.unknown, 2);
        let mut invalid = b.dropped.invalid.clone();
        invalid.sort();
        assert_eq!(invalid, vec!["api_level", "brand", "is_tablet"]);
        assert_eq!(b.device.model.as_deref(), Some("Pixel 7"));
        assert_eq!(b.device.width, Some(411.4));
        assert_eq!(b.device.is_emulator, Some(true));
        assert_eq!(b.device.is_tablet, None);
    }

    #[test]
    fn whole_batch_refusals() {
        let too_many = format!(
            r#"{{"data":{{"trace_events":[{}]}}}}"#,
            vec!["{}"; MAX_EVENTS + 1].join(",")
        );
        assert!(matches!(
            parse_batch(too_many.as_bytes(), now()),
            Err(BatchError::TooLarge(_))
        ));
        let exactly = format!(
            r#"{{"data":{{"trace_events":[{}]}}}}"#,
            vec!["{}"; MAX_EVENTS].join(",")
        );
        assert_eq!(
            parse_batch(exactly.as_bytes(), now())
                .unwrap()
                .rejected
                .len(),
            MAX_EVENTS
        );
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert!(matches!(
            parse_batch(&big, now()),
            Err(BatchError::TooLarge(_))
        ));
        for bad in [
            &b"not json"[..],
            br#"{"data":{}}"#,
            br#"{"data":{"trace_events":{}}}"#,
            br#"{"data":{"trace_events":[],"device_info":[]}}"#,
            br#"[]"#,
        ] {
            let err = parse_batch(bad, now()).unwrap_err();
            assert!(matches!(err, BatchError::Invalid(_)), "{err:?}");
            assert_eq!(err.reason(), "invalid_body");
        }
    }

    #[test]
    fn codes_round_trip() {
        for &n in TraceName::ALL {
            assert_eq!(TraceName::from_code(n.code()), Some(n));
            assert_eq!(TraceName::parse(n.as_str()), Some(n));
        }
        assert_eq!(TraceName::ALL.len(), 14);
        for &d in Dimension::ALL {
            assert_eq!(Dimension::from_code(d.code()), Some(d));
            assert_eq!(Dimension::parse(d.as_str()), Some(d));
        }
    }

    #[test]
    fn dimensions_of_a_device() {
        let d = DeviceInfo {
            system_name: Some("Android".into()),
            system_version: Some("14".into()),
            brand: Some("google".into()),
            is_tablet: Some(false),
            ..Default::default()
        };
        assert_eq!(d.dimension(Dimension::OsVersion), "Android 14");
        assert_eq!(d.dimension(Dimension::Manufacturer), "google");
        assert_eq!(d.dimension(Dimension::Tablet), "phone");
        assert_eq!(d.dimension(Dimension::AppVersion), "unknown");
        assert_eq!(d.dimension(Dimension::All), "");
    }

    #[test]
    fn dead_letters_keep_only_what_an_accepted_item_keeps() {
        let event = r#"{"name":"team:switch","ts":1,"dur":-5,"ph":"X","args":{"user":"alice@example.com"},"host":"db01"}"#;
        let kept = trace_event_dead_letter(event).unwrap();
        assert_eq!(kept, r#"{"dur":-5,"name":"team:switch","ph":"X","ts":1}"#);
        let body = br#"{"data":{"trace_events":[{"name":"x","args":{"tok":"secret"}},2],
            "device_info":{"device_unique_id":"RAW-DEVICE-1","model":"Pixel 7","owner":"alice"}},
            "user":"alice"}"#;
        let kept = batch_dead_letter(body).unwrap();
        for gone in ["RAW-DEVICE-1", "alice", "secret", "tok"] {
            assert!(!kept.contains(gone), "{gone} in {kept}");
        }
        assert!(kept.contains(r#""trace_events_count":2"#), "{kept}");
        assert!(kept.contains("Pixel 7"), "{kept}");
        assert!(batch_dead_letter(b"{oops").is_none());
    }
}
