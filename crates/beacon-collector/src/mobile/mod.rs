//! Channel 3: mobile app performance — `POST /v1/mobile/metrics` with `x-api-key`.
//!
//! The handler authenticates the key (cached), judges the batch with `beacon-wire` (each trace event
//! alone), replaces `device_unique_id` by a keyed hash before anything leaves this module, and submits
//! one write for the accepted events plus one dead letter per rejected event to the ingest service.

pub mod admin;

use crate::AppState;
use crate::decode::{DecodeError, decode};
use crate::error::ApiError;
use crate::keys::{API_KEY_PREFIX, DeviceHasher};
use crate::metrics::UNKNOWN_FIELDS_TOTAL;
use crate::outcome::Items;
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use beacon_store::mobile::{PerfContext, TraceBatch};
use beacon_store::{NewDeadLetter, WriteOp, WriteOutcome};
use beacon_wire::mobile::{self, BatchError, MetricsResponse, RejectedEntry};
use chrono::{DateTime, Utc};

pub const CHANNEL: &str = "mobile";
/// Bytes of a rejected event or batch kept (scrubbed) as a dead letter.
const DEAD_LETTER_BYTES: usize = 1024;
/// Bodies up to this size are judged on the request's task; larger ones on the blocking pool.
const INLINE_BYTES: usize = 64 << 10;

struct Prepared {
    traces: Option<TraceBatch>,
    letters: Vec<NewDeadLetter>,
    response: MetricsResponse,
    unknown_keys: usize,
    invalid_keys: usize,
}

/// A batch refused whole: the error, and the scrubbed copy for the dead letter.
struct Refused(ApiError, String, String);

/// Masks the value that follows every `device_unique_id` key in raw text, for dead letters of bodies
/// that could not be parsed (a parsed body never carries the raw id past [`prepare`]).
fn mask_device_ids(text: &str) -> String {
    const KEY: &str = "device_unique_id";
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(KEY) {
        let (head, tail) = rest.split_at(at + KEY.len());
        out.push_str(head);
        // Skip the closing quote, colon and spaces, then drop the value up to its end.
        let value_start = tail
            .find(|c: char| !matches!(c, '"' | ':' | ' ' | '\t' | '\n' | '\r'))
            .unwrap_or(tail.len());
        out.push_str(&tail[..value_start]);
        let value = &tail[value_start..];
        let end = if let Some(v) = value.strip_prefix('"') {
            let mut escaped = false;
            v.char_indices()
                .find(|(_, c)| {
                    let stop = !escaped && *c == '"';
                    escaped = !escaped && *c == '\\';
                    stop
                })
                .map(|(i, _)| i + 2)
                .unwrap_or(value.len())
        } else {
            value.find([',', '}', ']']).unwrap_or(value.len())
        };
        out.push_str("\"[device id]\"");
        rest = &value[end..];
    }
    out.push_str(rest);
    out
}

/// What a dead letter keeps of a body that is not JSON: a scrubbed prefix, device ids masked.
fn dead_letter_copy(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(&raw[..raw.len().min(DEAD_LETTER_BYTES * 8)]);
    let text = beacon_wire::text::storable(&text);
    beacon_scrub::scrub_truncated(&mask_device_ids(&text), DEAD_LETTER_BYTES).text
}

/// What a dead letter keeps of a batch refused whole: what an accepted batch would keep of it
/// ([`mobile::batch_dead_letter`]), scrubbed; a scrubbed prefix when it is not JSON.
fn batch_dead_letter(body: &[u8]) -> String {
    match mobile::batch_dead_letter(body) {
        Some(kept) => beacon_scrub::scrub_truncated(&kept, DEAD_LETTER_BYTES).text,
        None => dead_letter_copy(body),
    }
}

/// What a dead letter keeps of one rejected trace event ([`mobile::trace_event_dead_letter`]).
fn event_dead_letter(raw: &str) -> String {
    match mobile::trace_event_dead_letter(raw) {
        Some(kept) => beacon_scrub::scrub_truncated(&kept, DEAD_LETTER_BYTES).text,
        None => dead_letter_copy(raw.as_bytes()),
    }
}

/// The CPU part: decoding, judging, hashing the device id.
fn prepare(
    body: &[u8],
    encoding: Option<&str>,
    received_at: DateTime<Utc>,
    hasher: &DeviceHasher,
) -> Result<Prepared, Refused> {
    let decoded;
    let body = match encoding {
        None => body,
        Some(enc) => {
            decoded = decode(body, Some(enc), mobile::MAX_BODY_BYTES).map_err(|e| match e {
                DecodeError::TooLarge(_) => Refused(
                    ApiError::TooLarge(format!(
                        "body expands past {} bytes",
                        mobile::MAX_BODY_BYTES
                    )),
                    "too_large".into(),
                    String::new(),
                ),
                other => Refused(
                    ApiError::BadRequest(other.to_string()),
                    "invalid_encoding".into(),
                    String::new(),
                ),
            })?;
            &decoded[..]
        }
    };
    let batch = mobile::parse_batch(body, received_at).map_err(|e| {
        let reason = e.reason();
        let copy = batch_dead_letter(body);
        let err = match e {
            BatchError::TooLarge(m) => ApiError::TooLarge(m),
            BatchError::Invalid(f) => ApiError::InvalidField(f),
        };
        Refused(err, reason, copy)
    })?;
    let mut device = batch.device;
    // The raw id stops here: only its keyed hash goes on.
    let device_hash = device
        .device_unique_id
        .take()
        .filter(|id| !id.is_empty())
        .map(|id| hasher.hash(&id));
    let letters = batch
        .rejected
        .iter()
        .map(|r| NewDeadLetter {
            received_at,
            channel: CHANNEL.into(),
            reason: format!("{}: {}", r.reason.as_str(), r.detail),
            payload: event_dead_letter(&r.raw),
        })
        .collect();
    let response = MetricsResponse {
        accepted: batch.accepted.len(),
        rejected: batch
            .rejected
            .into_iter()
            .map(|r| RejectedEntry {
                index: r.index,
                reason: r.reason.as_str().to_string(),
                message: r.detail,
            })
            .collect(),
    };
    let traces = (!batch.accepted.is_empty()).then(|| TraceBatch {
        received_at,
        context: PerfContext::new(device, device_hash),
        events: batch.accepted,
    });
    Ok(Prepared {
        traces,
        letters,
        response,
        unknown_keys: batch.dropped.unknown,
        invalid_keys: batch.dropped.invalid.len(),
    })
}

/// `POST /v1/mobile/metrics`.
pub async fn metrics(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<MetricsResponse>, ApiError> {
    let received_at = state.clock.now();
    // The batch is one item until it is read; then each of its trace events is one.
    let request = Items::one(CHANNEL);
    let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) else {
        request.reject("missing_api_key");
        return Err(ApiError::Unauthenticated(
            "an x-api-key header is required (keys come from `beacon apikey create`)".into(),
        ));
    };
    let hash = crate::keys::hash(key.trim());
    let valid = if key.starts_with(API_KEY_PREFIX) {
        match state
            .api_keys
            .get(&hash, || state.store.api_key_valid(&hash))
            .await
        {
            Ok(valid) => valid,
            Err(e) => {
                request.reject("store_unavailable");
                return Err(e);
            }
        }
    } else {
        false
    };
    if !valid {
        request.reject("invalid_api_key");
        return Err(ApiError::Forbidden("unknown or revoked api key".into()));
    }
    let encoding = headers
        .get("content-encoding")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .filter(|e| !matches!(e.trim().to_ascii_lowercase().as_str(), "" | "identity"));
    let prepared = if body.len() <= INLINE_BYTES && encoding.is_none() {
        prepare(&body, None, received_at, &state.device_hasher)
    } else {
        let hasher = state.device_hasher.clone();
        crate::cpu::run(move || prepare(&body, encoding.as_deref(), received_at, &hasher))
            .await
            .unwrap_or_else(|e| {
                let error = ApiError::Internal(format!("batch processing failed: {e}"));
                Err(Refused(error, "internal".into(), String::new()))
            })
    };
    let prepared = match prepared {
        Ok(p) => p,
        Err(Refused(err, reason, copy)) => {
            request.reject(&reason);
            if !copy.is_empty() || !matches!(reason.as_str(), "too_large" | "internal") {
                let letter = WriteOp::DeadLetter(NewDeadLetter {
                    received_at,
                    channel: CHANNEL.into(),
                    reason: format!("{reason}: {err}"),
                    payload: copy,
                });
                // The refusal stands whether or not its dead letter could be kept.
                if let Err(e) = state.ingest.submit(letter).await {
                    tracing::warn!(error = %e, "dead letter of a refused mobile batch not stored");
                }
            }
            return Err(err);
        }
    };
    if prepared.unknown_keys > 0 {
        metrics::counter!(UNKNOWN_FIELDS_TOTAL, "channel" => CHANNEL)
            .increment(prepared.unknown_keys as u64);
    }
    if prepared.invalid_keys > 0 {
        metrics::counter!(UNKNOWN_FIELDS_TOTAL, "channel" => CHANNEL, "kind" => "invalid_type")
            .increment(prepared.invalid_keys as u64);
    }
    let accepted = prepared.response.accepted as u64;
    let mut items = request.into_items(accepted + prepared.response.rejected.len() as u64);
    for r in &prepared.response.rejected {
        items.split(1).reject(&r.reason);
    }
    let mut waits = Vec::with_capacity(1 + prepared.letters.len());
    let has_traces = prepared.traces.is_some();
    if let Some(t) = prepared.traces {
        waits.push(state.ingest.submit(WriteOp::Traces(Box::new(t))));
    }
    for letter in prepared.letters {
        waits.push(state.ingest.submit(WriteOp::DeadLetter(letter)));
    }
    let outcomes: Result<Vec<WriteOutcome>, ApiError> = futures_util::future::join_all(waits)
        .await
        .into_iter()
        .collect();
    let outcomes = match outcomes {
        Ok(o) => o,
        Err(e) => {
            items.reject("store_unavailable");
            return Err(e);
        }
    };
    if has_traces && outcomes.first() == Some(&WriteOutcome::Unstorable) {
        items.reject("unstorable");
        return Err(ApiError::BadRequest(
            "the store refused this batch's data".into(),
        ));
    }
    items.accept();
    Ok(Json(prepared.response))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_ids_are_masked_in_raw_text() {
        let raw = r#"{"data":{"device_info":{"device_unique_id": "c0ffee-1234", "model":"x"}, "device_unique_id":42, "x":"device_unique_id":"a\"b"}"#;
        let masked = mask_device_ids(raw);
        assert!(!masked.contains("c0ffee"));
        assert!(!masked.contains("42"));
        assert!(!masked.contains("a\\\"b"));
        assert!(masked.contains(r#""model":"x""#), "{masked}");
        assert_eq!(mask_device_ids("no ids here"), "no ids here");
        assert!(!mask_device_ids(r#"{"device_unique_id":"unterminated"#).contains("unterminated"));
    }

    #[test]
    fn the_hash_is_keyed() {
        let a = DeviceHasher::new(b"one").hash("device");
        assert_eq!(a.len(), 64);
        assert_eq!(a, DeviceHasher::new(b"one").hash("device"));
        assert_ne!(a, DeviceHasher::new(b"two").hash("device"));
        assert!(!a.contains("device"));
    }
}
