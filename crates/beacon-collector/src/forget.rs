//! Deletion requests: `POST /admin/v1/forget` (a server's or a device's data, by an admin),
//! `GET /admin/v1/forget/log`, and `POST /v1/forget` (an agent asking for its own server's data to be
//! forgotten; its diagnostic id is the credential). Each answers after the deletion committed.

use crate::AppState;
use crate::error::ApiError;
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use beacon_wire::FieldError;
use beacon_wire::admin::{AgentForget, ForgetRecord, ForgetRequest};
use serde::Deserialize;

/// Most log entries one request lists.
pub const MAX_LOG: u32 = 1000;

/// The longest raw device id accepted (the mobile channel's own limit is far below).
const MAX_DEVICE_ID: usize = 256;

fn record(s: &AppState, by: String, channel: &str, id: &str) -> ForgetRecord {
    ForgetRecord {
        at: s.clock.now(),
        by,
        channel: channel.into(),
        id_hash: crate::keys::hash(id),
        checks: 0,
        events: 0,
        trace_events: 0,
        dead_letters: 0,
    }
}

/// The label of the admin token of this request (the route is behind the token check).
async fn token_label(s: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(crate::admin::bearer_token)
        .unwrap_or_default();
    Ok(s.store
        .admin_token_label(&crate::keys::hash(token))
        .await?
        .unwrap_or_else(|| "admin".into()))
}

/// `POST /admin/v1/forget` `{"server": ID}` or `{"device": RAW_DEVICE_ID}`.
pub async fn forget(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<ForgetRequest>, JsonRejection>,
) -> Result<Json<ForgetRecord>, ApiError> {
    let Json(req) = body?;
    let by = token_label(&s, &headers).await?;
    let done = match (req.server, req.device) {
        (Some(server), None) => {
            let id = beacon_wire::security::parse_server_id(&server)
                .map_err(|e| FieldError::new("server", e.problem))?;
            let r = record(&s, by, "server", &id);
            s.store.forget_server(&id, r).await?
        }
        (None, Some(device)) => {
            if device.is_empty() || device.len() > MAX_DEVICE_ID {
                return Err(FieldError::new(
                    "device",
                    format!("must be 1 to {MAX_DEVICE_ID} bytes"),
                )
                .into());
            }
            // Stored as the collector's keyed hash, never raw: the same hash finds it.
            let hash = s.device_hasher.hash(&device);
            let r = record(&s, by, "device", &hash);
            s.store.forget_device(&hash, r).await?
        }
        _ => {
            return Err(FieldError::new("server", "give exactly one of server and device").into());
        }
    };
    tracing::info!(by = %done.by, channel = %done.channel, id_hash = %done.id_hash, checks = done.checks,
        events = done.events, trace_events = done.trace_events, dead_letters = done.dead_letters, "data forgotten");
    Ok(Json(done))
}

#[derive(Debug, Default, Deserialize)]
pub struct LogParams {
    limit: Option<String>,
}

/// `GET /admin/v1/forget/log?limit=`: the deletion log, newest first.
pub async fn log(
    State(s): State<AppState>,
    Query(p): Query<LogParams>,
) -> Result<Json<Vec<ForgetRecord>>, ApiError> {
    let limit: u32 = crate::admin::number("limit", &p.limit)?.unwrap_or(100);
    if limit == 0 || limit > MAX_LOG {
        return Err(FieldError::new("limit", format!("must be between 1 and {MAX_LOG}")).into());
    }
    Ok(Json(s.store.forget_log(limit).await?))
}

/// `POST /v1/forget` `{"server_id": ID}`: an agent's own server forgotten. Only the server that
/// holds the id can name it (26 random characters, known to that server and the collector; no
/// report or admin listing shows one); the answer comes after the deletion committed.
pub async fn agent_forget(
    State(s): State<AppState>,
    body: Result<Json<AgentForget>, JsonRejection>,
) -> Result<Json<ForgetRecord>, ApiError> {
    let Json(req) = body?;
    let id = beacon_wire::security::parse_server_id(&req.server_id)
        .map_err(|e| FieldError::new("server_id", e.problem))?;
    let r = record(&s, "agent".into(), "server", &id);
    let done = s.store.forget_server(&id, r).await?;
    tracing::info!(by = "agent", id_hash = %done.id_hash, checks = done.checks, events = done.events,
        dead_letters = done.dead_letters, "server data forgotten at the agent's request");
    Ok(Json(done))
}
