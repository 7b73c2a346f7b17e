//! The web dashboard under `/ui/`: server-rendered pages (markup and charts from `beacon-ui`) over
//! the same report functions the admin API answers with, behind a login with an admin token.
//!
//! Every [`Access::Session`](crate::routes::Access::Session) route of [`crate::routes::ALL`] is
//! mounted behind [`protect`]: without a valid session cookie a request is redirected to the login
//! page. A form that changes state carries the session's CSRF token ([`session::csrf_token`]),
//! checked by the handler with [`Session::check_csrf`].

pub mod bulletins;
pub mod issues;
pub mod pages;
pub mod perf;
pub mod session;
pub mod settings;

use crate::AppState;
use crate::error::ApiError;
use axum::extract::{ConnectInfo, Form, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::{Extension, Router};
use beacon_store::ui::UiSession;
use serde::Deserialize;
use session::{LOGIN_COOKIE, LOGIN_FORM_SECS, SESSION_COOKIE};
use std::net::SocketAddr;
use std::time::Instant;

/// Who is logged in, added to a request by [`protect`].
#[derive(Debug, Clone)]
pub struct Session {
    /// The label of the admin token the session was opened with.
    pub label: String,
    /// The CSRF token forms of this session carry.
    pub csrf: String,
}

impl Session {
    /// `403` unless `token` is this session's CSRF token.
    pub fn check_csrf(&self, token: &str) -> Result<(), UiError> {
        if session::same_secret(token, &self.csrf) {
            Ok(())
        } else {
            Err(UiError(ApiError::Forbidden(
                "the form is out of date or was not sent by this dashboard; reload the page and try again".into(),
            )))
        }
    }
}

/// An error shown as a dashboard page, with the status of the same error in the admin API.
#[derive(Debug)]
pub struct UiError(pub ApiError);

impl<E: Into<ApiError>> From<E> for UiError {
    fn from(e: E) -> Self {
        UiError(e.into())
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        let text = self.0.to_string();
        let api = self.0.into_response();
        error_page(api.status(), &text, api.headers().clone())
    }
}

/// An error as a dashboard page with `status`, keeping `Retry-After` and `Allow` of `headers`. A
/// server error's text is not shown (it is logged where it happened).
pub fn error_page(status: StatusCode, text: &str, headers: HeaderMap) -> Response {
    let message = if status.is_server_error() {
        "Something went wrong on the collector; its log has the details."
    } else {
        text
    };
    let page = beacon_ui::layout::error_page(status.as_u16(), message, &pages::css_href());
    let mut resp = (status, Html(page.into_string())).into_response();
    for name in [header::RETRY_AFTER, header::ALLOW] {
        if let Some(v) = headers.get(&name) {
            resp.headers_mut().insert(name, v.clone());
        }
    }
    resp
}

/// Cookies are `Secure` when the collector serves TLS itself.
fn secure(state: &AppState) -> bool {
    state.config.tls.cert.is_some()
}

/// The dashboard's routes behind the session check.
pub fn protect(ui_routes: Router<AppState>, state: AppState) -> Router<AppState> {
    // `route_layer`: only the dashboard's own routes, never the router's fallback (an unknown path
    // stays a 404 for everyone).
    ui_routes.route_layer(middleware::from_fn_with_state(state, require_session))
}

/// The session id of the request's cookie, if any.
fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| session::cookie(h, SESSION_COOKIE))
        .filter(|id| id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        .map(str::to_owned)
}

/// The open session of this request, if it has one.
async fn current(state: &AppState, headers: &HeaderMap) -> Result<Option<Session>, ApiError> {
    let Some(id) = session_id(headers) else {
        return Ok(None);
    };
    let found = state
        .store
        .ui_session(&crate::keys::hash(&id), state.clock.now())
        .await?;
    Ok(found.map(|s| Session {
        label: s.token_label,
        csrf: session::csrf_token(&id),
    }))
}

async fn require_session(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    match current(&state, req.headers()).await {
        Ok(Some(session)) => {
            req.extensions_mut().insert(session);
            next.run(req).await
        }
        Ok(None) => {
            // Back to this page after the login (GET only: a form is not re-sent).
            let target = match req.method() {
                &axum::http::Method::GET => req
                    .uri()
                    .path_and_query()
                    .map(|pq| pq.as_str().to_string())
                    .unwrap_or_default(),
                _ => String::new(),
            };
            Redirect::to(&login_url(&target)).into_response()
        }
        Err(e) => UiError(e).into_response(),
    }
}

/// `/ui/login`, with `next` when it is a dashboard page to come back to.
fn login_url(next: &str) -> String {
    match safe_next(next) {
        Some(n) if n != "/ui/" => format!("/ui/login?next={}", percent_encode(n)),
        _ => "/ui/login".into(),
    }
}

/// `next` when it is a path of the dashboard (never another site: no open redirect).
fn safe_next(next: &str) -> Option<&str> {
    (next.starts_with("/ui/") && !next.starts_with("/ui//") && !next.contains('\\')).then_some(next)
}

/// `s` percent-encoded, keeping `keep` as it is besides the unreserved characters (RFC 3986).
fn percent_encode_keeping(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b if keep.contains(&b) => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn percent_encode(s: &str) -> String {
    percent_encode_keeping(s, b"/")
}

/// One path segment (a bulletin id, a key name), percent-encoded.
pub(crate) fn encode(s: &str) -> String {
    percent_encode_keeping(s, b"")
}

/// `GET /`: the dashboard.
pub async fn root() -> Redirect {
    Redirect::to("/ui/")
}

#[derive(Debug, Default, Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// `GET /ui/login`: the form (a fresh double-submit token in a cookie and in the form), or the
/// dashboard when already logged in.
pub async fn login_form(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<LoginQuery>,
) -> Result<Response, UiError> {
    if current(&state, &headers).await?.is_some() {
        return Ok(
            Redirect::to(q.next.as_deref().and_then(safe_next).unwrap_or("/ui/")).into_response(),
        );
    }
    Ok(login_page(&state, q.next.as_deref(), None, StatusCode::OK))
}

fn login_page(
    state: &AppState,
    next: Option<&str>,
    error: Option<&str>,
    status: StatusCode,
) -> Response {
    let token = session::new_id();
    let page = beacon_ui::layout::login_page(&beacon_ui::layout::Login {
        error,
        form_token: &token,
        next: next.and_then(safe_next),
        static_css_href: &pages::css_href(),
    });
    let mut resp = (status, Html(page.into_string())).into_response();
    let cookie = session::set_cookie(LOGIN_COOKIE, &token, LOGIN_FORM_SECS, secure(state));
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    resp
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    form_token: String,
    #[serde(default)]
    next: Option<String>,
}

/// `POST /ui/login`: an admin token in the form field `token` opens a session.
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, UiError> {
    let addr = peer.ip();
    if let Err(retry_after_secs) = state.ui_logins.check(addr, Instant::now()) {
        tracing::warn!(client = %addr, "dashboard login refused: too many failed attempts");
        return Err(UiError(ApiError::RateLimited { retry_after_secs }));
    }
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|h| session::cookie(h, LOGIN_COOKIE));
    if !cookie.is_some_and(|c| !c.is_empty() && session::same_secret(c, &form.form_token)) {
        return Ok(login_page(
            &state,
            form.next.as_deref(),
            Some("The login form expired. Please try again."),
            StatusCode::FORBIDDEN,
        ));
    }
    let token_hash = crate::keys::hash(form.token.trim());
    let label = match form.token.trim() {
        "" => None,
        _ => state.store.admin_token_label(&token_hash).await?,
    };
    let Some(label) = label else {
        state.ui_logins.failed(addr, Instant::now());
        tracing::warn!(client = %addr, "dashboard login failed: unknown admin token");
        return Ok(login_page(
            &state,
            form.next.as_deref(),
            Some("That admin token is not valid."),
            StatusCode::UNAUTHORIZED,
        ));
    };
    state.ui_logins.succeeded(addr);
    tracing::info!(client = %addr, token = %label, "dashboard login");
    let target = form.next.as_deref().and_then(safe_next).unwrap_or("/ui/");
    open_session(&state, &token_hash, label, target).await
}

/// Opens a session for the admin token whose hash is `token_hash` and redirects to `target` with
/// its cookie set (and the login form's cookie cleared).
async fn open_session(
    state: &AppState,
    token_hash: &str,
    label: String,
    target: &str,
) -> Result<Response, UiError> {
    let id = session::new_id();
    let now = state.clock.now();
    let hours = state.config.ui.session_hours;
    state
        .store
        .create_ui_session(
            &UiSession {
                id_hash: crate::keys::hash(&id),
                token_label: label,
                created_at: now,
                expires_at: now + chrono::Duration::hours(hours as i64),
            },
            token_hash,
        )
        .await?;
    // Expired sessions (and login links) go at each login: their tables stay the size of the open ones.
    if let Err(e) = state.store.purge_ui_sessions(now).await {
        tracing::warn!(error = %e, "expired dashboard sessions not removed");
    }
    let mut resp = Redirect::to(target).into_response();
    for c in [
        session::set_cookie(SESSION_COOKIE, &id, hours * 3600, secure(state)),
        session::set_cookie(LOGIN_COOKIE, "", 0, secure(state)),
    ] {
        if let Ok(v) = HeaderValue::from_str(&c) {
            resp.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    Ok(resp)
}

/// Creates a one-time login link for the admin `token`, valid for `ttl` from `now`; returns its path
/// and query (`/ui/login/link?code=…`). The code is 256 random bits; the store keeps only its hash.
pub async fn create_login_link(
    store: &dyn beacon_store::Store,
    token: &str,
    now: chrono::DateTime<chrono::Utc>,
    ttl: chrono::Duration,
) -> Result<String, beacon_store::StoreError> {
    let code = session::new_id();
    store
        .create_ui_login_link(
            &crate::keys::hash(&code),
            &crate::keys::hash(token),
            now + ttl,
        )
        .await?;
    Ok(format!("/ui/login/link?code={code}"))
}

#[derive(Debug, Default, Deserialize)]
pub struct LinkQuery {
    #[serde(default)]
    code: String,
}

/// `GET /ui/login/link?code=…`: a one-time login link (`beacon demo` prints one) opens a session
/// and goes to the overview. A used, expired or unknown code shows the login form; failures count
/// against the client's login attempts like wrong tokens.
pub async fn login_link(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(q): Query<LinkQuery>,
) -> Result<Response, UiError> {
    let addr = peer.ip();
    if let Err(retry_after_secs) = state.ui_logins.check(addr, Instant::now()) {
        tracing::warn!(client = %addr, "dashboard login link refused: too many failed attempts");
        return Err(UiError(ApiError::RateLimited { retry_after_secs }));
    }
    let now = state.clock.now();
    let token_hash = match q.code.len() {
        64 if q.code.bytes().all(|b| b.is_ascii_hexdigit()) => {
            state
                .store
                .take_ui_login_link(&crate::keys::hash(&q.code), now)
                .await?
        }
        _ => None,
    };
    let label = match &token_hash {
        Some(h) => state.store.admin_token_label(h).await?,
        None => None,
    };
    let (Some(token_hash), Some(label)) = (token_hash, label) else {
        state.ui_logins.failed(addr, Instant::now());
        tracing::warn!(client = %addr, "dashboard login link refused: used, expired or unknown");
        return Ok(login_page(
            &state,
            None,
            Some("That login link was used already or has expired. Log in with an admin token."),
            StatusCode::UNAUTHORIZED,
        ));
    };
    state.ui_logins.succeeded(addr);
    tracing::info!(client = %addr, token = %label, "dashboard login by a one-time link");
    open_session(&state, &token_hash, label, "/ui/").await
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /ui/logout`: ends the session (in the store, so on every collector) and clears the cookie.
pub async fn logout(
    State(state): State<AppState>,
    Extension(session): Extension<Session>,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> Result<Response, UiError> {
    session.check_csrf(&form.csrf)?;
    if let Some(id) = session_id(&headers) {
        state
            .store
            .delete_ui_session(&crate::keys::hash(&id))
            .await?;
    }
    tracing::info!(token = %session.label, "dashboard logout");
    let mut resp = Redirect::to("/ui/login").into_response();
    if let Ok(v) =
        HeaderValue::from_str(&session::set_cookie(SESSION_COOKIE, "", 0, secure(&state)))
    {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
    Ok(resp)
}

/// `GET /ui/static/{file}`: the stylesheet under its content-hashed name, cached for a year; an
/// `If-None-Match` with its ETag gets `304`.
pub async fn asset(Path(file): Path<String>, headers: HeaderMap) -> Response {
    let hash = beacon_ui::style_hash();
    if file != pages::css_file() {
        return UiError(ApiError::NotFound(format!("no file {file:?}"))).into_response();
    }
    let etag = format!("\"{hash}\"");
    let cache = [
        (header::ETAG, etag.clone()),
        (
            header::CACHE_CONTROL,
            "public, max-age=31536000, immutable".to_string(),
        ),
    ];
    let matches = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (
        cache,
        [(header::CONTENT_TYPE, "text/css; charset=utf-8".to_string())],
        beacon_ui::STYLE_CSS,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_is_only_ever_a_dashboard_path() {
        assert_eq!(safe_next("/ui/fleet?by=os"), Some("/ui/fleet?by=os"));
        assert_eq!(safe_next("https://evil.example/"), None);
        assert_eq!(safe_next("//evil.example/ui/"), None);
        assert_eq!(safe_next("/ui//evil.example"), None);
        assert_eq!(safe_next("/ui/\\evil"), None);
        assert_eq!(safe_next("/admin/v1/issues"), None);
        assert_eq!(login_url("/ui/"), "/ui/login");
        assert_eq!(
            login_url("/ui/fleet?by=os&x=a b"),
            "/ui/login?next=/ui/fleet%3Fby%3Dos%26x%3Da%20b"
        );
        assert_eq!(login_url("http://x/"), "/ui/login");
    }
}
