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

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => ApiError::Unavailable(m),
            StoreError::Conflict(m) => ApiError::Conflict(m),
            StoreError::NotFound(m) => ApiError::NotFound(format!("{m} not found")),
            StoreError::Invalid(m) => ApiError::InvalidField(FieldError::new("query", m)),
            StoreError::Rejected(m) => ApiError::InvalidField(FieldError::new("query", m)),
        }
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
        if status.is_server_error() {
            tracing::warn!(error = %self, status = status.as_u16(), "request failed");
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
