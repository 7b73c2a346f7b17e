//! The admin API under `/admin/v1/`: bearer-token auth on every route, bulletins, reports, dead letters.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, Request, State};
use axum::handler::Handler;
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, MethodRouter};
use axum::{Json, Router};
use beacon_store::security as report;
use beacon_wire::FieldError;
use beacon_wire::admin::{
    DeadLetter, ExposureReport, FleetDimension, FleetReport, GrowthReport, IssueDetail,
    IssueFilter, IssueSort, IssueSummary, KeyInfo, KeyUpdate, NewProject, ProjectInfo,
};
use beacon_wire::bulletin::{Bulletin, NewBulletin};
use chrono::{Days, NaiveDate};
use serde::Deserialize;

/// The OpenAPI document of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Most dead letters one request lists.
pub const MAX_DEAD_LETTERS: u32 = 1000;

/// One operation of the admin API: a method on a path under `/admin/v1`, and its handler.
pub struct Operation {
    pub method: Method,
    pub path: &'static str,
    route: MethodRouter<AppState>,
}

fn op<H, T>(method: Method, path: &'static str, handler: H) -> Operation
where
    H: Handler<T, AppState>,
    T: 'static,
{
    let filter = MethodFilter::try_from(method.clone()).expect("a method axum can route");
    Operation {
        method,
        path,
        route: axum::routing::on(filter, handler),
    }
}

/// Every operation of the admin API: the router is built from this list, and a test checks it
/// against `openapi.json` both ways.
pub fn operations() -> Vec<Operation> {
    use crate::perf;
    const GET: Method = Method::GET;
    const POST: Method = Method::POST;
    vec![
        op(GET, "/openapi.json", openapi),
        op(GET, "/bulletins", list_bulletins),
        op(POST, "/bulletins", add_bulletin),
        op(GET, "/bulletins/{id}", show_bulletin),
        op(POST, "/bulletins/{id}/retract", retract_bulletin),
        op(GET, "/reports/fleet", fleet),
        op(GET, "/reports/growth", growth),
        op(GET, "/reports/exposure", exposure),
        op(GET, "/deadletters", dead_letters),
        op(GET, "/projects", list_projects),
        op(POST, "/projects", create_project),
        op(Method::PATCH, "/keys/{key}", update_key),
        op(GET, "/issues", list_issues),
        op(GET, "/issues/{id}", show_issue),
        op(GET, "/apikeys", perf::list_api_keys),
        op(POST, "/apikeys", perf::create_api_key),
        op(Method::DELETE, "/apikeys/{name}", perf::revoke_api_key),
        op(GET, "/perf/percentiles", perf::percentiles),
        op(GET, "/perf/histogram", perf::histogram),
        op(GET, "/perf/regressions", perf::regressions),
    ]
}

pub fn router(state: AppState) -> Router<AppState> {
    operations()
        .into_iter()
        // A path given twice merges its methods.
        .fold(Router::new(), |r, o| r.route(o.path, o.route))
        .layer(middleware::from_fn_with_state(state, require_token))
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
        .admin_token_valid(&crate::tokens::hash(token))
        .await
    {
        Ok(true) => next.run(req).await,
        Ok(false) => ApiError::Unauthorized.into_response(),
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// The credentials of `Authorization: Bearer <token>`; the scheme is case-insensitive (RFC 7235).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

async fn list_bulletins(State(s): State<AppState>) -> Result<Json<Vec<Bulletin>>, ApiError> {
    Ok(Json(s.store.bulletins().await?))
}

async fn show_bulletin(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Bulletin>, ApiError> {
    s.store
        .bulletin(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("bulletin {id} not found")))
}

async fn add_bulletin(
    State(s): State<AppState>,
    body: Result<Json<NewBulletin>, JsonRejection>,
) -> Result<(StatusCode, Json<Bulletin>), ApiError> {
    let Json(new) = body?;
    let bulletin = Bulletin::from_new(new, s.clock.now())?;
    s.store.insert_bulletin(&bulletin).await?;
    refresh(&s).await;
    tracing::info!(bulletin = %bulletin.id, affected = %bulletin.affected, "bulletin published");
    Ok((StatusCode::CREATED, Json(bulletin)))
}

async fn retract_bulletin(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Bulletin>, ApiError> {
    let b = s.store.retract_bulletin(&id, s.clock.now()).await?;
    refresh(&s).await;
    tracing::info!(bulletin = %b.id, "bulletin retracted");
    Ok(Json(b))
}

async fn refresh(s: &AppState) {
    if let Err(e) = s.bulletins.refresh(&*s.store).await {
        tracing::warn!(error = %e, "bulletin cache refresh failed; retrying on schedule");
    }
}

#[derive(Debug, Default, Deserialize)]
struct ReportParams {
    day: Option<String>,
    from: Option<String>,
    to: Option<String>,
    by: Option<String>,
    include_test: Option<String>,
    bulletin: Option<String>,
    window_days: Option<String>,
    as_of: Option<String>,
    channel: Option<String>,
    limit: Option<String>,
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
/// Refuses `from` after `to`, and ranges over [`report::MAX_RANGE_DAYS`].
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
    if days > report::MAX_RANGE_DAYS {
        return Err(FieldError::new(
            "from",
            format!(
                "{from} is {days} days before to ({to}), at most {} are allowed",
                report::MAX_RANGE_DAYS
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

impl ReportParams {
    /// `day`, or `from`/`to`; missing ends default to `today` and `today - default_days + 1`.
    fn range(
        &self,
        today: NaiveDate,
        default_days: u64,
    ) -> Result<(NaiveDate, NaiveDate), FieldError> {
        if let Some(day) = date("day", &self.day)? {
            if self.from.is_some() || self.to.is_some() {
                return Err(FieldError::new(
                    "day",
                    "give either day or from/to, not both",
                ));
            }
            return Ok((day, day));
        }
        date_range(
            date("from", &self.from)?,
            date("to", &self.to)?,
            today,
            default_days,
        )
    }
}

async fn fleet(
    State(s): State<AppState>,
    Query(p): Query<ReportParams>,
) -> Result<Json<FleetReport>, ApiError> {
    let today = s.clock.now().date_naive();
    let (from, to) = p.range(today, 1)?;
    let by: FleetDimension =
        p.by.as_deref()
            .map(str::parse)
            .transpose()?
            .unwrap_or_default();
    let include_test = flag("include_test", &p.include_test)?;
    let r = report::fleet(
        &*s.store,
        from,
        to,
        by,
        include_test,
        s.config.reports.min_group_size,
    )
    .await?;
    Ok(Json(r))
}

async fn growth(
    State(s): State<AppState>,
    Query(p): Query<ReportParams>,
) -> Result<Json<GrowthReport>, ApiError> {
    let today = s.clock.now().date_naive();
    let (from, to) = p.range(today, 30)?;
    let include_test = flag("include_test", &p.include_test)?;
    let gone = s.config.reports.gone_after_days;
    if from.checked_sub_days(Days::new(gone.into())).is_none() {
        // Judged here, before the store (whose own guard says the same).
        return Err(
            FieldError::new("query", format!("{from} minus {gone} days is out of range")).into(),
        );
    }
    let r = report::growth(
        &*s.store,
        from,
        to,
        include_test,
        s.config.reports.gone_after_days,
        today,
    )
    .await?;
    Ok(Json(r))
}

async fn exposure(
    State(s): State<AppState>,
    Query(p): Query<ReportParams>,
) -> Result<Json<ExposureReport>, ApiError> {
    let today = s.clock.now().date_naive();
    let as_of = date("as_of", &p.as_of)?.unwrap_or(today);
    let window: u32 =
        number("window_days", &p.window_days)?.unwrap_or(s.config.reports.exposure_window_days);
    if window == 0 || window > 366 {
        return Err(FieldError::new("window_days", "must be between 1 and 366").into());
    }
    let include_test = flag("include_test", &p.include_test)?;
    let r = report::exposure(
        &*s.store,
        p.bulletin.as_deref(),
        window,
        as_of,
        include_test,
        s.config.reports.min_group_size,
    )
    .await?;
    Ok(Json(r))
}

async fn dead_letters(
    State(s): State<AppState>,
    Query(p): Query<ReportParams>,
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

/// Longest project name.
pub const MAX_PROJECT_NAME: usize = 100;
/// Most issues one request lists.
pub const MAX_ISSUES: u32 = 1000;

async fn list_projects(State(s): State<AppState>) -> Result<Json<Vec<ProjectInfo>>, ApiError> {
    Ok(Json(s.store.projects().await?))
}

async fn create_project(
    State(s): State<AppState>,
    body: Result<Json<NewProject>, JsonRejection>,
) -> Result<(StatusCode, Json<ProjectInfo>), ApiError> {
    let Json(new) = body?;
    let name = new.name.trim();
    if name.is_empty()
        || new.name.chars().count() > MAX_PROJECT_NAME
        || name.chars().any(char::is_control)
    {
        return Err(FieldError::new(
            "name",
            format!("must be 1 to {MAX_PROJECT_NAME} printable characters, not only white space"),
        )
        .into());
    }
    let key = hex::encode(rand::random::<[u8; 16]>());
    let project = s.store.create_project(name, &key, s.clock.now()).await?;
    tracing::info!(project = project.id, name = %project.name, "project created");
    Ok((StatusCode::CREATED, Json(project)))
}

async fn update_key(
    State(s): State<AppState>,
    Path(key): Path<String>,
    body: Result<Json<KeyUpdate>, JsonRejection>,
) -> Result<Json<KeyInfo>, ApiError> {
    let Json(update) = body?;
    let info = s
        .store
        .update_key(&key, update.enabled, update.rate_limit_per_minute)
        .await?;
    s.keys.forget(&key);
    tracing::info!(key = %key, enabled = info.enabled, rate_limit = ?info.rate_limit_per_minute, "key updated");
    Ok(Json(info))
}

#[derive(Debug, Default, Deserialize)]
struct IssueParams {
    project: Option<String>,
    release: Option<String>,
    environment: Option<String>,
    level: Option<String>,
    sort: Option<String>,
    limit: Option<String>,
}

async fn list_issues(
    State(s): State<AppState>,
    Query(p): Query<IssueParams>,
) -> Result<Json<Vec<IssueSummary>>, ApiError> {
    let level = p
        .level
        .as_deref()
        .map(|l| {
            serde_json::from_value(serde_json::Value::String(l.to_string())).map_err(|_| {
                FieldError::new(
                    "level",
                    format!("must be debug, info, warning, error or fatal, got {l:?}"),
                )
            })
        })
        .transpose()?;
    let sort = match p.sort.as_deref() {
        None | Some("last-seen") => IssueSort::LastSeen,
        Some("count") => IssueSort::Count,
        Some(o) => {
            return Err(
                FieldError::new("sort", format!("must be last-seen or count, got {o:?}")).into(),
            );
        }
    };
    let limit: u32 = number("limit", &p.limit)?.unwrap_or(100);
    if limit == 0 || limit > MAX_ISSUES {
        return Err(FieldError::new("limit", format!("must be between 1 and {MAX_ISSUES}")).into());
    }
    let filter = IssueFilter {
        project_id: number::<i64>("project", &p.project)?
            .map(|id| {
                (id >= 1).then_some(id).ok_or_else(|| {
                    FieldError::new(
                        "project",
                        format!("must be a project id (1 or more), got {id}"),
                    )
                })
            })
            .transpose()?,
        release: p.release,
        environment: p.environment,
        level,
        sort,
        limit,
    };
    Ok(Json(s.store.issues(&filter).await?))
}

async fn show_issue(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<IssueDetail>, ApiError> {
    let id: i64 = crate::error::path_number("id", &id)?;
    s.store
        .issue(id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("issue {id} not found")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    const PREFIX: &str = "/admin/v1";

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
        operations()
            .iter()
            .map(|o| (o.method.to_string(), format!("{PREFIX}{}", o.path)))
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
        assert_eq!(
            routes.len(),
            operations().len(),
            "an operation is listed twice"
        );
    }

    #[test]
    fn every_admin_path_has_a_metrics_label() {
        for o in operations() {
            let path = format!("{PREFIX}{}", o.path);
            assert_eq!(
                crate::server::static_route(&path),
                path,
                "add {path} to server::ROUTES"
            );
        }
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
