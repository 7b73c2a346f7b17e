//! Operations endpoints: `/healthz`, `/readyz`, `/metrics`, and the request-latency middleware.

use crate::AppState;
use crate::metrics::REQUEST_DURATION;
use axum::Json;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{StatusCode, header};
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
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, crate::error::RETRY_AFTER_SECS.to_string())],
            Json(serde_json::json!({"status": "unavailable", "store": backend, "error": e.to_string()})),
        )
            .into_response(),
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

/// Records `beacon_http_request_duration_seconds{route, method, status}`.
pub async fn track_latency(req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().to_string();
    let started = Instant::now();
    let resp = next.run(req).await;
    metrics::histogram!(
        REQUEST_DURATION,
        "route" => route,
        "method" => method,
        "status" => resp.status().as_u16().to_string()
    )
    .record(started.elapsed().as_secs_f64());
    resp
}
