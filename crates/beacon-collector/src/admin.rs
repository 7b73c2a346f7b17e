//! The admin API under `/admin/v1/`: bearer-token auth on every route, bulletins, reports, dead letters.

use crate::AppState;
use crate::error::ApiError;
use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use beacon_store::report;
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

pub fn router(state: AppState) -> Router<AppState> {
    Router::new()
        .route("/openapi.json", get(openapi))
        .route("/bulletins", get(list_bulletins).post(add_bulletin))
        .route("/bulletins/{id}", get(show_bulletin))
        .route("/bulletins/{id}/retract", post(retract_bulletin))
        .route("/reports/fleet", get(fleet))
        .route("/reports/growth", get(growth))
        .route("/reports/exposure", get(exposure))
        .route("/deadletters", get(dead_letters))
        .route("/projects", get(list_projects).post(create_project))
        .route("/keys/{key}", axum::routing::patch(update_key))
        .route("/issues", get(list_issues))
        .route("/issues/{id}", get(show_issue))
        .route(
            "/apikeys",
            get(crate::perf::list_api_keys).post(crate::perf::create_api_key),
        )
        .route(
            "/apikeys/{name}",
            axum::routing::delete(crate::perf::revoke_api_key),
        )
        .route("/perf/percentiles", get(crate::perf::percentiles))
        .route("/perf/histogram", get(crate::perf::histogram))
        .route("/perf/regressions", get(crate::perf::regressions))
        .layer(middleware::from_fn_with_state(state, require_token))
}

/// `401` unless `Authorization: Bearer <token>` names a stored token.
async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty());
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
    body: Result<Json<NewBulletin>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Bulletin>), ApiError> {
    let Json(new) = body.map_err(|e| FieldError::new("body", e.body_text().to_lowercase()))?;
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

pub(crate) fn date(field: &str, v: &Option<String>) -> Result<Option<NaiveDate>, FieldError> {
    v.as_deref()
        .map(|s| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d").map_err(|_| {
                FieldError::new(field, format!("must be a date YYYY-MM-DD, got {s:?}"))
            })
        })
        .transpose()
}

pub(crate) fn flag(field: &str, v: &Option<String>) -> Result<bool, FieldError> {
    match v.as_deref() {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") | Some("") => Ok(true),
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
        let to = date("to", &self.to)?.unwrap_or(today);
        let from =
            date("from", &self.from)?.unwrap_or(to - Days::new(default_days.saturating_sub(1)));
        if from > to {
            return Err(FieldError::new(
                "from",
                format!("{from} is after to ({to})"),
            ));
        }
        Ok((from, to))
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
    body: Result<Json<NewProject>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<ProjectInfo>), ApiError> {
    let Json(new) = body.map_err(|e| FieldError::new("body", e.body_text().to_lowercase()))?;
    let name = new.name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_PROJECT_NAME
        || name.chars().any(char::is_control)
    {
        return Err(FieldError::new(
            "name",
            format!("must be 1 to {MAX_PROJECT_NAME} printable characters"),
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
    body: Result<Json<KeyUpdate>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<KeyInfo>, ApiError> {
    let Json(update) = body.map_err(|e| FieldError::new("body", e.body_text().to_lowercase()))?;
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
        project_id: number("project", &p.project)?,
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
    Path(id): Path<i64>,
) -> Result<Json<IssueDetail>, ApiError> {
    s.store
        .issue(id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("issue {id} not found")))
}
