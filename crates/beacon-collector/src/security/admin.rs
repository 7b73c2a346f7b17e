//! Admin API of the security channel: bulletins and the fleet, growth, exposure and release-health
//! reports.

use crate::AppState;
use crate::admin::{date, date_range, flag, number};
use crate::error::ApiError;
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use beacon_wire::FieldError;
use beacon_wire::admin::{
    ExposureReport, FleetDimension, FleetReport, GrowthReport, ReleaseHealthReport,
};
use beacon_wire::bulletin::{Bulletin, NewBulletin};
use chrono::{Days, NaiveDate};
use serde::Deserialize;

pub async fn list_bulletins(State(s): State<AppState>) -> Result<Json<Vec<Bulletin>>, ApiError> {
    Ok(Json(s.store.bulletins().await?))
}

pub async fn show_bulletin(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Bulletin>, ApiError> {
    s.store
        .bulletin(&id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("bulletin {id} not found")))
}

pub async fn add_bulletin(
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

pub async fn retract_bulletin(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Bulletin>, ApiError> {
    let b = s.store.retract_bulletin(&id, s.clock.now()).await?;
    refresh(&s).await;
    tracing::info!(bulletin = %b.id, "bulletin retracted");
    Ok(Json(b))
}

pub(crate) async fn refresh(s: &AppState) {
    if let Err(e) = s.bulletins.refresh(&*s.store).await {
        tracing::warn!(error = %e, "bulletin cache refresh failed; retrying on schedule");
    }
}

/// The query parameters of the security reports, as the admin API and the dashboard take them.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ReportParams {
    pub day: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub by: Option<String>,
    pub include_test: Option<String>,
    pub bulletin: Option<String>,
    pub window_days: Option<String>,
    pub as_of: Option<String>,
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

pub async fn fleet(
    State(s): State<AppState>,
    Query(p): Query<ReportParams>,
) -> Result<Json<FleetReport>, ApiError> {
    Ok(Json(fleet_report(&s, &p).await?))
}

/// The fleet report for these parameters (the admin API's and the dashboard's).
pub async fn fleet_report(s: &AppState, p: &ReportParams) -> Result<FleetReport, ApiError> {
    let today = s.clock.now().date_naive();
    let (from, to) = p.range(today, 1)?;
    let by: FleetDimension =
        p.by.as_deref()
            .map(str::parse)
            .transpose()?
            .unwrap_or_default();
    let include_test = flag("include_test", &p.include_test)?;
    let r = beacon_store::security::fleet(
        &*s.store,
        from,
        to,
        by,
        include_test,
        s.config.reports.min_group_size,
    )
    .await?;
    Ok(r)
}

pub async fn growth(
    State(s): State<AppState>,
    Query(p): Query<ReportParams>,
) -> Result<Json<GrowthReport>, ApiError> {
    Ok(Json(growth_report(&s, &p).await?))
}

/// The growth report for these parameters (the admin API's and the dashboard's).
pub async fn growth_report(s: &AppState, p: &ReportParams) -> Result<GrowthReport, ApiError> {
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
    let r = beacon_store::security::growth(
        &*s.store,
        from,
        to,
        include_test,
        s.config.reports.gone_after_days,
        today,
    )
    .await?;
    Ok(r)
}

/// Release health over `from`/`to` (default: the last 30 days).
pub async fn releases(
    State(s): State<AppState>,
    Query(p): Query<ReportParams>,
) -> Result<Json<ReleaseHealthReport>, ApiError> {
    Ok(Json(release_report(&s, &p).await?))
}

/// The release-health report for these parameters (the admin API's and the dashboard's).
pub async fn release_report(
    s: &AppState,
    p: &ReportParams,
) -> Result<ReleaseHealthReport, ApiError> {
    let today = s.clock.now().date_naive();
    let (from, to) = p.range(today, 30)?;
    let include_test = flag("include_test", &p.include_test)?;
    let r = beacon_store::security::release_health_report(
        &*s.store,
        from,
        to,
        include_test,
        s.config.reports.min_group_size,
    )
    .await?;
    Ok(r)
}

pub async fn exposure(
    State(s): State<AppState>,
    Query(p): Query<ReportParams>,
) -> Result<Json<ExposureReport>, ApiError> {
    Ok(Json(exposure_report(&s, &p).await?))
}

/// The exposure report for these parameters (the admin API's and the dashboard's).
pub async fn exposure_report(s: &AppState, p: &ReportParams) -> Result<ExposureReport, ApiError> {
    let today = s.clock.now().date_naive();
    let as_of = date("as_of", &p.as_of)?.unwrap_or(today);
    let window: u32 =
        number("window_days", &p.window_days)?.unwrap_or(s.config.reports.exposure_window_days);
    if window == 0 || window > 366 {
        return Err(FieldError::new("window_days", "must be between 1 and 366").into());
    }
    let include_test = flag("include_test", &p.include_test)?;
    let r = beacon_store::security::exposure(
        &*s.store,
        p.bulletin.as_deref(),
        window,
        as_of,
        include_test,
        s.config.reports.min_group_size,
    )
    .await?;
    Ok(r)
}
