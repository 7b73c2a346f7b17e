//! Channel 1: `GET /security` and `GET /bulletins/{id}`.

pub mod admin;
pub mod bulletins;

use crate::AppState;
use crate::error::ApiError;
use crate::metrics::UNKNOWN_FIELDS_TOTAL;
use crate::outcome::Items;
use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::header;
use axum::response::IntoResponse;
use beacon_store::security::CheckRecord;
use beacon_store::{NewDeadLetter, WriteOp, WriteOutcome};
use beacon_wire::security::{BulletinNotice, parse_query};

pub const CHANNEL: &str = "security";

/// Bytes of a rejected query kept in the dead-letter table: only its known keys
/// ([`beacon_wire::security::dead_letter_view`]), scrubbed.
pub const DEAD_LETTER_BYTES: usize = 1024;

pub async fn check(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Vec<BulletinNotice>>, ApiError> {
    let item = Items::one(CHANNEL);
    let raw = query.unwrap_or_default();
    let received_at = state.clock.now();
    let parsed = match parse_query(&raw) {
        Ok(p) => p,
        Err(field_error) => {
            let reason = format!("invalid_{}", field_error.field);
            item.reject(&reason);
            let payload = beacon_scrub::scrub_truncated(
                &beacon_wire::security::dead_letter_view(&raw),
                DEAD_LETTER_BYTES,
            )
            .text;
            let dead = WriteOp::DeadLetter(NewDeadLetter {
                received_at,
                channel: CHANNEL.into(),
                reason: format!("{reason}: {}", field_error.problem),
                payload,
            });
            if let Err(e) = state.ingest.submit(dead).await {
                tracing::warn!(error = %e, "could not keep a dead letter");
            }
            return Err(ApiError::InvalidField(field_error));
        }
    };
    if parsed.unknown_keys > 0 {
        metrics::counter!(UNKNOWN_FIELDS_TOTAL, "channel" => CHANNEL)
            .increment(parsed.unknown_keys as u64);
    }
    let version = parsed.check.version.clone();
    let record = CheckRecord {
        received_at,
        check: parsed.check,
    };
    let written = state.ingest.submit(WriteOp::Check(record)).await;
    item.stored(written.as_ref().copied());
    match written {
        Ok(WriteOutcome::Accepted | WriteOutcome::Duplicate) => {}
        Ok(WriteOutcome::Unstorable) => {
            return Err(ApiError::BadRequest(
                "the store refused this check's data".into(),
            ));
        }
        Err(e) => return Err(e),
    }
    Ok(Json(state.bulletins.notices_for(&version)))
}

/// The `Content-Security-Policy` of a bulletin body: inline styles and `data:` images, nothing else.
pub const BULLETIN_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'; sandbox";

pub async fn bulletin_body(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, ApiError> {
    let body = state
        .bulletins
        .body(&id)
        .ok_or_else(|| ApiError::NotFound(format!("bulletin {id} not found")))?;
    // The body is the vendor's HTML: the browser must not sniff another type, run scripts, load
    // anything, or treat the page as same-origin with the collector.
    Ok((
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CONTENT_SECURITY_POLICY, BULLETIN_CSP),
        ],
        body,
    ))
}
