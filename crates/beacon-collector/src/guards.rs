//! Request-body guards: a declared `Content-Length` over the route's limit is answered `413` before
//! any byte of the body is read (so `Expect: 100-continue` gets no `100 Continue`), and a body must
//! arrive in full within `server.body_timeout_secs` (then `408`). Both answers carry the JSON
//! `ErrorBody` and, over HTTP/1.x, `Connection: close`: the unread rest of the body is not waited for.

use crate::error::ApiError;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, Version, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use beacon_wire::admin::ErrorBody;
use bytes::Bytes;
use http_body::Frame;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::Sleep;

/// axum's default body limit, which every route without its own keeps.
pub const DEFAULT_BODY_LIMIT: usize = 2 * 1024 * 1024;

/// The body limit of a route pattern: the one place both the router's `DefaultBodyLimit` and the
/// early `Content-Length` check read.
pub fn body_limit(route: &str) -> usize {
    crate::routes::body_limit(route).unwrap_or(DEFAULT_BODY_LIMIT)
}

/// Route layer: `413` when the declared length is over the matched route's limit.
pub async fn declared_length(req: Request, next: Next) -> Response {
    let limit = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(DEFAULT_BODY_LIMIT, |m| body_limit(m.as_str()));
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(n) = declared
        && n > limit as u64
    {
        let resp = ApiError::TooLarge(format!(
            "the body declares {n} bytes; this endpoint takes at most {limit}"
        ))
        .into_response();
        return closing(req.version(), resp);
    }
    next.run(req).await
}

/// Layer: a request body that has not arrived in full within `limit` ends the request with `408`.
pub async fn body_deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    use http_body::Body as _;
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let version = req.version();
    let fired = Arc::new(AtomicBool::new(false));
    let req = req.map(|inner| {
        Body::new(DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(limit)),
            fired: fired.clone(),
        })
    });
    let resp = next.run(req).await;
    if !fired.load(Ordering::SeqCst) {
        return resp;
    }
    metrics::counter!(crate::http::CONNECTIONS_CUT, "reason" => "body_timeout").increment(1);
    let body = ErrorBody {
        error: "timeout".into(),
        field: None,
        message: format!(
            "the request body did not arrive within {} s",
            limit.as_secs()
        ),
    };
    closing(
        version,
        (StatusCode::REQUEST_TIMEOUT, axum::Json(body)).into_response(),
    )
}

/// Adds `Connection: close` over HTTP/1.x (HTTP/2 has no such header; the stream ends by itself).
fn closing(version: Version, mut resp: Response) -> Response {
    if version <= Version::HTTP_11 {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyTimeout;

/// A body that fails once its deadline passes before its end.
struct DeadlineBody {
    inner: Body,
    deadline: Pin<Box<Sleep>>,
    fired: Arc<AtomicBool>,
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame);
        }
        match this.deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.fired.store(true, Ordering::SeqCst);
                Poll::Ready(Some(Err(axum::Error::new(BodyTimeout))))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
