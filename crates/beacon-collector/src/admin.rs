//! The admin API under `/admin/v1/`: bearer-token auth on every route, the OpenAPI document, dead
//! letters, and the query-parameter rules every channel's admin handlers share. The handlers of each
//! channel live in its own module (`security::admin`, `sentry::admin`, `mobile::admin`).

use crate::AppState;
use crate::error::ApiError;
use axum::extract::{Query, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use beacon_wire::FieldError;
use beacon_wire::admin::DeadLetter;
use chrono::{Days, NaiveDate};
use serde::Deserialize;

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Most dead letters one request lists.
pub const MAX_DEAD_LETTERS: u32 = 1000;

/// The admin routes (`server::router` puts every [`Access::AdminToken`] route of
/// [`crate::routes::ALL`] here) behind the bearer-token check.
///
/// [`Access::AdminToken`]: crate::routes::Access::AdminToken
pub fn protect(admin_routes: Router<AppState>, state: AppState) -> Router<AppState> {
    admin_routes.layer(middleware::from_fn_with_state(state, require_token))
}

/// `401` unless `Authorization: Bearer <token>` names a stored token.
async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token);
    let Some(token) = token else {
        return ApiError::Unauthorized.into_response();
    };
    match state
        .store
        .admin_token_valid(&crate::keys::hash(token))
        .await
    {
        Ok(true) => next.run(req).await,
        Ok(false) => ApiError::Unauthorized.into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The credentials of `Authorization: Bearer <token>`; the scheme is case-insensitive (RFC 7235).
pub(crate) fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

pub async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// The first date a date parameter may name.
pub const FIRST_DATE: NaiveDate = NaiveDate::from_ymd_opt(2000, 1, 1).expect("a date");
/// The last date a date parameter may name. With [`FIRST_DATE`], this keeps every report's date
/// arithmetic far from the calendar's limits.
pub const LAST_DATE: NaiveDate = NaiveDate::from_ymd_opt(2099, 12, 31).expect("a date");

/// A date parameter: `YYYY-MM-DD`, from [`FIRST_DATE`] to [`LAST_DATE`].
pub(crate) fn date(field: &str, v: &Option<String>) -> Result<Option<NaiveDate>, FieldError> {
    let Some(s) = v.as_deref() else {
        return Ok(None);
    };
    let d = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| FieldError::new(field, format!("must be a date YYYY-MM-DD, got {s:?}")))?;
    if !(FIRST_DATE..=LAST_DATE).contains(&d) {
        return Err(FieldError::new(
            field,
            format!("must be between {FIRST_DATE} and {LAST_DATE}, got {s:?}"),
        ));
    }
    Ok(Some(d))
}

/// `from`..=`to` of a report: `to` defaults to `today`, `from` to `default_days` ending at `to`.
/// Refuses `from` after `to`, and ranges over [`beacon_store::security::MAX_RANGE_DAYS`].
pub(crate) fn date_range(
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
    today: NaiveDate,
    default_days: u64,
) -> Result<(NaiveDate, NaiveDate), FieldError> {
    let to = to.unwrap_or(today);
    let from = from.unwrap_or_else(|| {
        to.checked_sub_days(Days::new(default_days.saturating_sub(1)))
            .unwrap_or(FIRST_DATE)
            .clamp(FIRST_DATE, to)
    });
    if from > to {
        return Err(FieldError::new(
            "from",
            format!("{from} is after to ({to})"),
        ));
    }
    let days = (to - from).num_days();
    if days > beacon_store::security::MAX_RANGE_DAYS {
        return Err(FieldError::new(
            "from",
            format!(
                "{from} is {days} days before to ({to}), at most {} are allowed",
                beacon_store::security::MAX_RANGE_DAYS
            ),
        ));
    }
    Ok((from, to))
}

pub(crate) fn flag(field: &str, v: &Option<String>) -> Result<bool, FieldError> {
    match v.as_deref() {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") => Ok(true),
        Some(o) => Err(FieldError::new(
            field,
            format!("must be true or false, got {o:?}"),
        )),
    }
}

pub(crate) fn number<T: std::str::FromStr>(
    field: &str,
    v: &Option<String>,
) -> Result<Option<T>, FieldError> {
    v.as_deref()
        .map(|s| {
            s.parse().map_err(|_| {
                FieldError::new(field, format!("must be a positive integer, got {s:?}"))
            })
        })
        .transpose()
}

#[derive(Debug, Default, Deserialize)]
pub struct DeadLetterParams {
    channel: Option<String>,
    limit: Option<String>,
}

pub async fn dead_letters(
    State(s): State<AppState>,
    Query(p): Query<DeadLetterParams>,
) -> Result<Json<Vec<DeadLetter>>, ApiError> {
    let limit: u32 = number("limit", &p.limit)?.unwrap_or(100);
    if limit == 0 || limit > MAX_DEAD_LETTERS {
        return Err(
            FieldError::new("limit", format!("must be between 1 and {MAX_DEAD_LETTERS}")).into(),
        );
    }
    Ok(Json(
        s.store.dead_letters(p.channel.as_deref(), limit).await?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// `(METHOD, /admin/v1/path)` of every operation in `openapi.json`.
    fn documented() -> BTreeSet<(String, String)> {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        let mut ops = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("a path item").keys() {
                if [
                    "get", "put", "post", "delete", "options", "head", "patch", "trace",
                ]
                .contains(&method.as_str())
                {
                    ops.insert((method.to_uppercase(), path.clone()));
                }
            }
        }
        ops
    }

    fn routed() -> BTreeSet<(String, String)> {
        crate::routes::ALL
            .iter()
            .filter(|r| r.access == crate::routes::Access::AdminToken)
            .map(|r| (r.method.to_string(), r.path.to_string()))
            .collect()
    }

    #[test]
    fn openapi_documents_exactly_the_routed_operations() {
        let (doc, routes) = (documented(), routed());
        let undocumented: Vec<_> = routes.difference(&doc).collect();
        let unrouted: Vec<_> = doc.difference(&routes).collect();
        assert!(
            undocumented.is_empty() && unrouted.is_empty(),
            "routed but not in openapi.json: {undocumented:?}\nin openapi.json but not routed: {unrouted:?}"
        );
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for (value, token) in [
            ("Bearer abc", Some("abc")),
            ("bearer abc", Some("abc")),
            ("BEARER  abc ", Some("abc")),
            ("Bearer", None),
            ("Bearer ", None),
            ("Bearerabc", None),
            ("Basic abc", None),
        ] {
            assert_eq!(bearer_token(value), token, "{value:?}");
        }
    }

    #[test]
    fn dates_stay_in_the_window() {
        let some = |s: &str| Some(s.to_string());
        assert!(date("to", &some("2000-01-01")).is_ok());
        assert!(date("to", &some("2099-12-31")).is_ok());
        for bad in ["1999-12-31", "2100-01-01", "-262143-01-01", "+262142-12-31"] {
            assert_eq!(date("to", &some(bad)).unwrap_err().field, "to", "{bad}");
        }
        let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
        // The default start never leaves the window.
        assert_eq!(
            date_range(None, Some(d("2000-01-05")), d("2026-01-01"), 30).unwrap(),
            (FIRST_DATE, d("2000-01-05"))
        );
        assert_eq!(
            date_range(None, None, d("2026-01-30"), 30).unwrap(),
            (d("2026-01-01"), d("2026-01-30"))
        );
        let too_long = date_range(Some(FIRST_DATE), Some(LAST_DATE), d("2026-01-01"), 1);
        assert_eq!(too_long.unwrap_err().field, "from");
    }
}
