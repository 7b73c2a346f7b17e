//! Channel 2: Sentry-compatible error reporting — `POST /api/{project_id}/envelope/` and `/store/`.
//!
//! Nobody unauthenticated gets any work done: the handler checks the credentials in headers or the
//! query string first; a `/store/` request without any is refused at once, and of an envelope without
//! any only the first line (its header, with the `dsn`) is decoded and read before the key is checked.
//! Then the body goes to the blocking pool for the CPU work — decoding, envelope parsing, projection,
//! scrubbing, grouping — and the events to the ingest service, answering `200` only once they are
//! committed.

pub mod admin;

use crate::AppState;
use crate::decode::{self, DecodeError, decode_prefix};
use crate::error::ApiError;
use crate::ingest::Ingest;
use crate::outcome::Items;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use beacon_store::{EventRecord, NewDeadLetter, WriteOp, WriteOutcome};
use beacon_wire::admin::KeyInfo;
use beacon_wire::sentry::envelope::{self, Payload};
use beacon_wire::sentry::{auth, event, grouping};
use chrono::{DateTime, Utc};
use std::collections::HashMap;
use std::sync::Mutex;

pub const CHANNEL: &str = "errors";
/// Largest request body, compressed.
pub const MAX_BODY_BYTES: usize = 20 << 20;
/// Largest request body, decompressed.
pub const MAX_DECODED_BYTES: usize = 100 << 20;
/// Bytes of a rejected item kept (scrubbed) as a dead letter.
const DEAD_LETTER_BYTES: usize = 2048;

/// Item types Sentry SDKs send that Beacon accepts, counts and does not store.
const NOT_STORED: &[&str] = &[
    "transaction",
    "session",
    "sessions",
    "attachment",
    "client_report",
    "check_in",
    "profile",
    "profile_chunk",
    "replay_event",
    "replay_recording",
    "statsd",
    "metric_meta",
    "user_report",
    "feedback",
    "span",
    "log",
    "otel_log",
];

/// Events per key per minute, in fixed one-minute windows.
#[derive(Default)]
pub struct RateLimiter {
    windows: Mutex<HashMap<String, (i64, u64)>>,
}

impl RateLimiter {
    /// Takes `n` events from the key's allowance; `Err(seconds to wait)` when over.
    pub fn take(&self, key: &str, limit: u64, n: u64, now: DateTime<Utc>) -> Result<(), u64> {
        let minute = now.timestamp().div_euclid(60);
        let mut w = self.windows.lock().expect("rate limiter lock");
        if w.len() > 100_000 {
            w.retain(|_, (m, _)| *m == minute);
        }
        let entry = w.entry(key.to_string()).or_insert((minute, 0));
        if entry.0 != minute {
            *entry = (minute, 0);
        }
        if entry.1 + n > limit {
            return Err((60 - now.timestamp().rem_euclid(60)).max(1) as u64);
        }
        entry.1 += n;
        Ok(())
    }
}

/// Keys named by the request's headers and query string.
fn request_keys(headers: &HeaderMap, query: Option<&str>) -> Result<Vec<String>, ApiError> {
    let mut keys = Vec::new();
    for name in ["x-sentry-auth", "authorization"] {
        if let Some(v) = headers.get(name) {
            let v = v
                .to_str()
                .map_err(|_| ApiError::Unauthenticated(format!("{name} is not ascii")))?;
            if name == "authorization"
                && !v.trim_start().to_ascii_lowercase().starts_with("sentry ")
            {
                continue;
            }
            keys.push(
                auth::key_from_header(v).map_err(|e| ApiError::Unauthenticated(e.to_string()))?,
            );
        }
    }
    for pair in query.unwrap_or_default().split('&') {
        if let Some(("sentry_key", v)) = pair.split_once('=') {
            keys.push(v.to_string());
        }
    }
    Ok(keys)
}

/// One key, known, enabled, of this project.
async fn authenticate(
    state: &AppState,
    keys: &[String],
    project_id: u64,
) -> Result<KeyInfo, ApiError> {
    let mut distinct: Vec<&String> = keys.iter().collect();
    distinct.sort();
    distinct.dedup();
    let key = match distinct.as_slice() {
        [] => return Err(ApiError::Unauthenticated("no sentry_key: send X-Sentry-Auth, Authorization: Sentry, ?sentry_key= or a dsn in the envelope header".into())),
        [one] => *one,
        _ => return Err(ApiError::Unauthenticated("conflicting sentry keys in one request".into())),
    };
    if !auth::is_public_key(key) {
        return Err(ApiError::Forbidden("unknown sentry key".into()));
    }
    let info = state
        .keys
        .get(key, || state.store.project_key(key))
        .await?
        .ok_or_else(|| ApiError::Forbidden("unknown sentry key".into()))?;
    if !info.enabled {
        return Err(ApiError::Forbidden("this sentry key is disabled".into()));
    }
    if info.project_id as u64 != project_id {
        return Err(ApiError::Forbidden(format!(
            "this key does not belong to project {project_id}"
        )));
    }
    Ok(info)
}

/// What became of one item, before anything is written.
enum Judged {
    Event(Box<EventRecord>),
    Rejected {
        reason: &'static str,
        detail: String,
        copy: String,
    },
    NotStored(&'static str),
}

struct Prepared {
    envelope_key: Option<String>,
    header_event_id: Option<String>,
    items: Vec<Judged>,
}

fn decode_error(e: DecodeError) -> ApiError {
    match e {
        DecodeError::TooLarge(_) => ApiError::TooLarge(e.to_string()),
        other => ApiError::BadRequest(other.to_string()),
    }
}

/// A request whose body cannot be used at all: the answer, and the reason its outcome is counted with.
struct Refused(ApiError, &'static str);

impl From<DecodeError> for Refused {
    fn from(e: DecodeError) -> Self {
        let reason = match e {
            DecodeError::TooLarge(_) => "too_large",
            _ => "invalid_encoding",
        };
        Refused(decode_error(e), reason)
    }
}

/// What a rejected event's dead letter keeps: what an accepted event would have kept of it (the lenient
/// whitelist projection, scrubbed), cut to [`DEAD_LETTER_BYTES`]; of a body that is not JSON, a
/// scrubbed prefix; of one over the size limit, nothing (the reason says how big it was).
fn dead_letter_copy(payload: &[u8], fallback_id: &str, received_at: DateTime<Utc>) -> String {
    if payload.len() > event::MAX_EVENT_BYTES {
        return String::new();
    }
    match event::project_lenient(payload, fallback_id, received_at) {
        Some(mut kept) => {
            beacon_scrub::scrub_event(&mut kept);
            let json = serde_json::to_string(&kept).unwrap_or_default();
            beacon_scrub::scrub_truncated(&json, DEAD_LETTER_BYTES).text
        }
        None => {
            let prefix = &payload[..payload.len().min(DEAD_LETTER_BYTES * 4)];
            let text = beacon_wire::text::storable(&String::from_utf8_lossy(prefix));
            beacon_scrub::scrub_truncated(&text, DEAD_LETTER_BYTES).text
        }
    }
}

fn judge_event(
    payload: &[u8],
    fallback_id: &str,
    project_id: i64,
    received_at: DateTime<Utc>,
) -> Judged {
    let reject = |reason, detail: String| Judged::Rejected {
        reason,
        detail,
        copy: dead_letter_copy(payload, fallback_id, received_at),
    };
    let mut ev = match event::project(payload, fallback_id, received_at) {
        Ok(ev) => ev,
        Err(e @ event::EventError::TooLarge(n)) => {
            return reject(e.reason(), format!("event is {n} bytes"));
        }
        Err(event::EventError::Json(e)) => return reject("invalid_json", e),
        Err(e) => return reject(e.reason(), e.to_string()),
    };
    let stats = beacon_scrub::scrub_event(&mut ev);
    for (rule, n) in stats.iter().filter(|(_, n)| *n > 0) {
        metrics::counter!(crate::metrics::REDACTIONS_TOTAL, "channel" => CHANNEL, "rule" => rule)
            .increment(n);
    }
    let g = grouping::group(&ev);
    let server_id = ev.tags.get("server_id").cloned();
    let event_json = match serde_json::to_string(&ev) {
        Ok(j) => j,
        Err(e) => return reject("invalid_json", format!("cannot serialise the event: {e}")),
    };
    Judged::Event(Box::new(EventRecord {
        project_id,
        received_at,
        event_json,
        event: ev,
        group_hash: g.hash,
        title: g.title,
        culprit: g.culprit,
        server_id,
    }))
}

fn new_event_id() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Bodies up to this size (as sent) are processed on the request's own task when they also decode
/// to at most [`INLINE_DECODED_BYTES`]; bigger ones go to the blocking pool.
pub const INLINE_BODY_BYTES: usize = 16 << 10;
/// See [`INLINE_BODY_BYTES`]. A typical event of this size is decoded, parsed, scrubbed and grouped
/// in tens of microseconds (a 30-frame event: ~36 µs), within tokio's budget between two awaits;
/// handing it to another thread cost more than the work (measured: ~16k vs ~28k events/s).
pub const INLINE_DECODED_BYTES: usize = 64 << 10;

/// Processes a small body in place; `None` when it is (or decodes to something) too big for that.
fn inline_prepare(
    body: &[u8],
    encoding: Option<&str>,
    is_envelope: bool,
    project_id: i64,
    received_at: DateTime<Utc>,
) -> Option<Result<Prepared, Refused>> {
    if body.len() > INLINE_BODY_BYTES {
        return None;
    }
    match prepare(
        body,
        encoding,
        INLINE_DECODED_BYTES,
        is_envelope,
        project_id,
        received_at,
    ) {
        Err(Refused(ApiError::TooLarge(_), _)) => None,
        other => Some(other),
    }
}

/// The CPU-heavy part: decoding, parsing, projection, scrubbing, grouping. An envelope is read as it
/// is decoded, item by item: only event payloads (each at most [`event::MAX_EVENT_BYTES`]) are ever
/// held, and each is judged before the next is read, so a request holds at most one event's bytes
/// whatever it decodes to (attachments and the like are read past).
fn prepare(
    body: &[u8],
    encoding: Option<&str>,
    decoded_limit: usize,
    is_envelope: bool,
    project_id: i64,
    received_at: DateTime<Utc>,
) -> Result<Prepared, Refused> {
    if !is_envelope {
        // The body is one event: at most its limit is kept; the rest is only counted.
        let mut stream = decode::stream(body, encoding, decoded_limit)?;
        let broken = |stream: &std::io::BufReader<decode::Stream<'_>>| {
            Refused::from(
                stream
                    .get_ref()
                    .error()
                    .unwrap_or(DecodeError::TooLarge(decoded_limit)),
            )
        };
        let mut payload = Vec::new();
        let kept = std::io::Read::read_to_end(
            &mut std::io::Read::take(&mut stream, event::MAX_EVENT_BYTES as u64 + 1),
            &mut payload,
        );
        if kept.is_err() {
            return Err(broken(&stream));
        }
        let id = new_event_id();
        let judged = if payload.len() > event::MAX_EVENT_BYTES {
            let Ok(rest) = std::io::copy(&mut stream, &mut std::io::sink()) else {
                return Err(broken(&stream));
            };
            too_large_event(payload.len() as u64 + rest)
        } else {
            judge_event(&payload, &id, project_id, received_at)
        };
        return Ok(Prepared {
            envelope_key: None,
            header_event_id: None,
            items: vec![judged],
        });
    }
    let mut stream = decode::stream(body, encoding, decoded_limit)?;
    let read = read_envelope(&mut stream, project_id, received_at);
    read.map_err(|e| match stream.get_ref().error() {
        // The decoding broke off (past its limit, or corrupt): that is what is wrong.
        Some(d) => Refused::from(d),
        None => Refused(ApiError::BadRequest(e.to_string()), e.reason()),
    })?
}

/// The judgement of an event over [`event::MAX_EVENT_BYTES`], which was never held in memory.
fn too_large_event(len: u64) -> Judged {
    let e = event::EventError::TooLarge(usize::try_from(len).unwrap_or(usize::MAX));
    Judged::Rejected {
        reason: e.reason(),
        detail: format!("event is {len} bytes"),
        // Nothing of an event over the limit is kept (the reason says how big it was).
        copy: String::new(),
    }
}

/// Reads an envelope's items from its decoded body and judges each as it comes.
fn read_envelope(
    body: impl std::io::BufRead,
    project_id: i64,
    received_at: DateTime<Utc>,
) -> Result<Result<Prepared, Refused>, envelope::EnvelopeError> {
    let (header, mut reader) = envelope::Reader::new(body)?;
    let envelope_key = match header.dsn.as_deref() {
        Some(dsn) => match auth::parse_dsn(dsn) {
            Ok(dsn) => Some(dsn.public_key),
            Err(e) => {
                return Ok(Err(Refused(
                    ApiError::Unauthenticated(e.to_string()),
                    "invalid_dsn",
                )));
            }
        },
        None => None,
    };
    let header_id = header
        .event_id
        .as_deref()
        .and_then(event::normalize_event_id);
    let mut items = Vec::new();
    while let Some(item) = reader.next_item(|ty| ty == "event", event::MAX_EVENT_BYTES)? {
        items.push(match (item.ty.as_str(), item.payload) {
            ("event", Payload::Kept(payload)) => {
                let fallback = header_id.clone().unwrap_or_else(new_event_id);
                judge_event(&payload, &fallback, project_id, received_at)
            }
            ("event", Payload::TooLarge { len }) => too_large_event(len),
            (other, _) => Judged::NotStored(
                NOT_STORED
                    .iter()
                    .find(|t| **t == other)
                    .copied()
                    .unwrap_or("unknown"),
            ),
        });
    }
    Ok(Ok(Prepared {
        envelope_key,
        header_event_id: header_id,
        items,
    }))
}

pub async fn envelope(
    state: State<AppState>,
    path: Path<String>,
    headers: HeaderMap,
    query: RawQuery,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    ingest(state, path, headers, query, body, true).await
}

pub async fn store(
    state: State<AppState>,
    path: Path<String>,
    headers: HeaderMap,
    query: RawQuery,
    body: Bytes,
) -> Result<Json<serde_json::Value>, ApiError> {
    ingest(state, path, headers, query, body, false).await
}

async fn ingest(
    State(state): State<AppState>,
    Path(project_id): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
    is_envelope: bool,
) -> Result<Json<serde_json::Value>, ApiError> {
    let project_id: u64 = crate::error::path_number("project_id", &project_id)?;
    let received_at = state.clock.now();
    let mut keys = request_keys(&headers, query.as_deref())?;
    let encoding = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if keys.is_empty() {
        if !is_envelope {
            return Err(ApiError::Unauthenticated(
                "no sentry_key: a /store/ request must send X-Sentry-Auth, Authorization: Sentry or ?sentry_key=".into(),
            ));
        }
        // Only the envelope header is read before the key is known: its first line, decoded up to
        // the header's size limit and no further.
        let first = decode_prefix(&body, encoding.as_deref(), envelope::MAX_HEADER_BYTES + 1)
            .map_err(decode_error)?;
        let header = envelope::parse_header(&first).map_err(|e| {
            ApiError::Unauthenticated(format!(
                "no sentry_key in headers or query, and the envelope header cannot be read: {e}"
            ))
        })?;
        if let Some(dsn) = header.dsn.as_deref() {
            keys.push(
                auth::parse_dsn(dsn)
                    .map_err(|e| ApiError::Unauthenticated(e.to_string()))?
                    .public_key,
            );
        }
    }
    let key = authenticate(&state, &keys, project_id).await?;
    // From here on the request's body is an item of this channel; once read, its items are.
    let request = Items::one(CHANNEL);
    let pid = match i64::try_from(project_id) {
        Ok(pid) => pid,
        Err(_) => {
            request.reject("unknown_project");
            return Err(ApiError::NotFound(format!(
                "project {project_id} not found"
            )));
        }
    };
    let prepared = match inline_prepare(&body, encoding.as_deref(), is_envelope, pid, received_at) {
        Some(prepared) => prepared,
        None => crate::cpu::run(move || {
            prepare(
                &body,
                encoding.as_deref(),
                MAX_DECODED_BYTES,
                is_envelope,
                pid,
                received_at,
            )
        })
        .await
        .unwrap_or_else(|e| {
            Err(Refused(
                ApiError::Internal(format!("event processing failed: {e}")),
                "internal",
            ))
        }),
    };
    let prepared = match prepared {
        Ok(p) => p,
        Err(Refused(error, reason)) => {
            request.reject(reason);
            return Err(error);
        }
    };
    // The envelope's own dsn must not name another key than the one authenticated.
    if let Some(envelope_key) = &prepared.envelope_key
        && *envelope_key != key.public_key
    {
        request.reject("conflicting_keys");
        return Err(ApiError::Unauthenticated(
            "conflicting sentry keys in one request".into(),
        ));
    }
    let mut items = request.into_items(prepared.items.len() as u64);

    let events = prepared
        .items
        .iter()
        .filter(|i| matches!(i, Judged::Event(_)))
        .count() as u64;
    let limit = key
        .rate_limit_per_minute
        .map(u64::from)
        .unwrap_or(state.config.errors.rate_limit_per_minute);
    if events > 0
        && let Err(retry_after_secs) =
            state
                .limiter
                .take(&key.public_key, limit, events, received_at)
    {
        // The whole request is refused: every item in it.
        items.rate_limited();
        return Err(ApiError::RateLimited { retry_after_secs });
    }
    let mut id = prepared.header_event_id.clone();
    let mut ops = Vec::new();
    // Per operation: the event's own guard, or none for a dead letter (its item already ended).
    let mut guards = Vec::new();
    let mut rejected = Vec::new();
    for item in prepared.items {
        match item {
            Judged::Event(e) => {
                id.get_or_insert_with(|| e.event.event_id.clone());
                ops.push(WriteOp::Event(e));
                guards.push(Some(items.split(1)));
            }
            Judged::Rejected {
                reason,
                detail,
                copy,
            } => {
                items.split(1).reject(reason);
                rejected.push(format!("{reason}: {detail}"));
                ops.push(WriteOp::DeadLetter(NewDeadLetter {
                    received_at,
                    channel: CHANNEL.into(),
                    reason: format!("{reason}: {detail}"),
                    payload: copy,
                }));
                guards.push(None);
            }
            Judged::NotStored(kind) => {
                items
                    .split(1)
                    .accept_unstored(&format!("not_stored_{kind}"));
            }
        }
    }
    let outcomes = submit_all(&state.ingest, ops).await;
    let mut stored = 0;
    for (guard, outcome) in guards.into_iter().zip(&outcomes) {
        let Some(guard) = guard else { continue };
        match outcome {
            Ok(WriteOutcome::Accepted | WriteOutcome::Duplicate) => stored += 1,
            Ok(WriteOutcome::Unstorable) => {
                rejected.push("unstorable: the store refused the event's data".into())
            }
            Err(_) => {}
        }
        guard.stored(outcome.as_ref().copied());
    }
    if let Some(Err(e)) = outcomes.into_iter().find(Result::is_err) {
        return Err(e);
    }
    if stored == 0 && !rejected.is_empty() {
        // Nothing usable in the request.
        let message = rejected.join("; ");
        return Err(if rejected.iter().all(|r| r.starts_with("too_large")) {
            ApiError::TooLarge(message)
        } else {
            ApiError::BadRequest(message)
        });
    }
    Ok(Json(
        serde_json::json!({ "id": id.unwrap_or_else(new_event_id) }),
    ))
}

/// Submits every operation, then waits for all; the outcome of each, in order.
async fn submit_all(ingest: &Ingest, ops: Vec<WriteOp>) -> Vec<Result<WriteOutcome, ApiError>> {
    let waits: Vec<_> = ops
        .into_iter()
        .map(|op| {
            let ingest = ingest.clone();
            async move { ingest.submit(op).await }
        })
        .collect();
    futures_util::future::join_all(waits).await
}
