//! Operations endpoints: `/healthz`, `/readyz`, `/metrics`, and the request-latency middleware.

use crate::AppState;
use crate::metrics::REQUEST_DURATION;
use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::time::Instant;

/// Alive: the process answers.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready: the store answers.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let backend = state.store.backend();
    match state.store.ping().await {
        Ok(()) => Json(serde_json::json!({"status": "ready", "store": backend})).into_response(),
        Err(e) => {
            // Anyone may ask: the store's error text (hosts, users, paths) goes to the log only.
            tracing::warn!(error = %e, store = backend, "readiness check: the store does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(
                    header::RETRY_AFTER,
                    crate::error::RETRY_AFTER_SECS.to_string(),
                )],
                Json(serde_json::json!({
                    "status": "unavailable",
                    "store": backend,
                    "error": "the store does not answer; see the collector's log",
                })),
            )
                .into_response()
        }
    }
}

/// Prometheus text exposition.
pub async fn metrics() -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::handle().render(),
    )
}

/// Records `beacon_http_request_duration_seconds{route, method, status}`. Labels are static strings:
/// this runs on every request.
pub async fn track_latency(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| crate::routes::static_path(p.as_str()))
        .unwrap_or("unmatched");
    let method = match *req.method() {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::HEAD => "HEAD",
        _ => "other",
    };
    let started = Instant::now();
    let resp = next.run(req).await;
    let status = resp.status();
    let status: metrics::SharedString = match status.as_u16() {
        200 => "200".into(),
        201 => "201".into(),
        400 => "400".into(),
        401 => "401".into(),
        404 => "404".into(),
        503 => "503".into(),
        other => other.to_string().into(),
    };
    metrics::histogram!(REQUEST_DURATION, "route" => route, "method" => method, "status" => status)
        .record(started.elapsed().as_secs_f64());
    resp
}
