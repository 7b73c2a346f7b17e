//! The one error type of the HTTP layer, and its one mapping to statuses and JSON bodies.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use beacon_store::StoreError;
use beacon_wire::FieldError;
use beacon_wire::admin::ErrorBody;

/// Seconds a client is asked to wait when the store is unavailable.
pub const RETRY_AFTER_SECS: u64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A named field of the input is wrong → `400`.
    #[error("{0}")]
    InvalidField(#[from] FieldError),
    /// No valid bearer token → `401`.
    #[error("a valid admin bearer token is required")]
    Unauthorized,
    /// Missing or conflicting client credentials (Sentry auth) → `401`.
    #[error("{0}")]
    Unauthenticated(String),
    /// Known credentials that may not do this → `403`.
    #[error("{0}")]
    Forbidden(String),
    /// A body over a size limit → `413`.
    #[error("{0}")]
    TooLarge(String),
    /// A key over its rate → `429` with `Retry-After` and `X-Sentry-Rate-Limits`.
    #[error("rate limit exceeded; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// A malformed body that names no single field → `400`.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// The store cannot take or give data now → `503` with `Retry-After`.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

/// Each store error by what happened: the client's fault (`4xx`), the store's state (`503`), or a
/// fault of ours to look into (`500`).
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => ApiError::Unavailable(m),
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::NotFound(m) => ApiError::NotFound(format!("{m} not found")),
            // Handlers validate their input first; a report's own guard answers as it always has.
            StoreError::InvalidInput(m) => ApiError::InvalidField(FieldError::new("query", m)),
            StoreError::Rejected(m) => ApiError::InvalidField(FieldError::new("query", m)),
            // A row this version cannot read back is not the client's doing.
            e @ (StoreError::Corrupt(_) | StoreError::Config(_)) => {
                ApiError::Internal(e.to_string())
            }
        }
    }
}

/// A JSON body the extractor refused: over the size limit → `413`; anything else → `400` naming
/// the body.
impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(e: axum::extract::rejection::JsonRejection) -> Self {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge("the request body is too large".into())
        } else {
            ApiError::InvalidField(FieldError::new("body", lower_first(&e.body_text())))
        }
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidField(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized | ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidField(_) => "invalid_field",
            ApiError::Unauthorized | ApiError::Unauthenticated(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::TooLarge(_) => "too_large",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::BadRequest(_) => "bad_request",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        // Every error answer is built here: ours (5xx) at error, the client's (4xx) at debug.
        if status.is_server_error() {
            tracing::error!(error = %self, status = status.as_u16(), "request failed");
        } else {
            tracing::debug!(error = %self, status = status.as_u16(), "request refused");
        }
        let (field, message) = match &self {
            ApiError::InvalidField(f) => {
                (Some(f.field.clone()), format!("{}: {}", f.field, f.problem))
            }
            other => (None, other.to_string()),
        };
        let body = ErrorBody {
            error: self.code().to_string(),
            field,
            message,
        };
        let mut resp = (status, axum::Json(body)).into_response();
        match self {
            ApiError::Unauthorized => {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::Unavailable(_) => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
            }
            ApiError::RateLimited { retry_after_secs } => {
                let h = resp.headers_mut();
                h.insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
                // Sentry's format: retry_after:categories:scope; empty categories mean all.
                if let Ok(v) = HeaderValue::from_str(&format!("{retry_after_secs}::key")) {
                    h.insert("x-sentry-rate-limits", v);
                }
            }
            _ => {}
        }
        resp
    }
}

/// A numeric path parameter, parsed in the handler so that a bad one is a `400` naming the parameter
/// (the framework's own rejection cannot say which parameter it was).
pub fn path_number<T: std::str::FromStr>(field: &str, raw: &str) -> Result<T, ApiError> {
    raw.parse().map_err(|_| {
        let shown: String = raw.chars().take(64).collect();
        ApiError::InvalidField(FieldError::new(
            field,
            format!("must be a whole number in range, got {shown:?}"),
        ))
    })
}

/// Every error answer of `router` as a JSON [`ErrorBody`]: a panicking handler answers `500`
/// ([`panic_response`]), and the framework's own rejections keep their status ([`json_errors`]).
pub fn with_json_errors<S: Clone + Send + Sync + 'static>(
    router: axum::Router<S>,
) -> axum::Router<S> {
    router
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .layer(axum::middleware::from_fn(json_errors))
}

/// The answer when a handler panics (through `tower_http`'s `CatchPanicLayer`): `500` with the
/// usual JSON body, and the panic logged at error.
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let what = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not a string)");
    tracing::error!(panic = what, "a request handler panicked");
    let body = ErrorBody {
        error: "internal".into(),
        field: None,
        message: "internal error; the collector logged it".into(),
    };
    (StatusCode::INTERNAL_SERVER_ERROR, axum::Json(body)).into_response()
}

/// Longest framework rejection text kept in the message.
const MAX_REJECTION_TEXT: usize = 512;

/// Gives the framework's own error answers (unknown route, method not allowed, a path parameter or
/// body an extractor refuses, a body over a limit) the same JSON [`ErrorBody`] as every other error,
/// or, under the dashboard's `/ui/`, the same error page as its other errors. Error answers that
/// are JSON or HTML already (every [`ApiError`], every dashboard error page) pass through untouched.
pub async fn json_errors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let dashboard = req.uri().path().starts_with("/ui/");
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error())
        || resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/html"))
    {
        return resp;
    }
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, MAX_REJECTION_TEXT)
        .await
        .map(|b| lower_first(String::from_utf8_lossy(&b).trim()))
        .unwrap_or_default();
    let mut field = None;
    let (code, message) = match status {
        // A path parameter that does not parse, e.g. `/admin/v1/issues/abc`.
        StatusCode::BAD_REQUEST if text.starts_with("invalid URL: ") => {
            field = Some("path".to_string());
            (
                "invalid_field",
                format!("path: {}", &text["invalid URL: ".len()..]),
            )
        }
        StatusCode::NOT_FOUND => ("not_found", "no such route".to_string()),
        StatusCode::METHOD_NOT_ALLOWED => {
            let allowed = parts
                .headers
                .get(header::ALLOW)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            (
                "method_not_allowed",
                format!("method not allowed here; allowed: {allowed}"),
            )
        }
        StatusCode::PAYLOAD_TOO_LARGE => ("too_large", "the request body is too large".into()),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("unsupported_media_type", text),
        s if s.is_server_error() => ("internal", text),
        _ => ("bad_request", text),
    };
    let message = if message.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request failed")
            .to_lowercase()
    } else {
        message
    };
    if dashboard {
        return crate::ui::error_page(status, &message, parts.headers);
    }
    let body = ErrorBody {
        error: code.into(),
        field,
        message,
    };
    let json = serde_json::to_vec(&body).expect("an error body serializes");
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, axum::body::Body::from(json))
}
