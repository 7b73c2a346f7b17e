//! Admin API of the mobile channel: API keys and performance reports.

use crate::AppState;
use crate::admin::{date, date_range, flag, number};
use crate::error::ApiError;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use beacon_store::mobile::{self as reports, PerfQuery, RegressionQuery};
use beacon_wire::FieldError;
use beacon_wire::admin::{
    ApiKeyInfo, CreatedApiKey, HistogramReport, NewApiKey, PercentileReport, RegressionReport,
};
use beacon_wire::mobile::{Dimension, TraceName};
use chrono::NaiveDate;
use serde::Deserialize;

/// Longest API key name.
pub const MAX_KEY_NAME: usize = 100;
/// Days a performance report covers when `from` is not given.
pub const DEFAULT_DAYS: u64 = 30;

pub async fn list_api_keys(State(s): State<AppState>) -> Result<Json<Vec<ApiKeyInfo>>, ApiError> {
    Ok(Json(s.store.api_keys().await?))
}

pub async fn create_api_key(
    State(s): State<AppState>,
    body: Result<Json<NewApiKey>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<CreatedApiKey>), ApiError> {
    let Json(new) = body?;
    Ok((StatusCode::CREATED, Json(new_api_key(&s, &new.name).await?)))
}

/// Makes a mobile API key named `name` (the admin API's and the dashboard's); the answer is the
/// only time the key is shown.
pub async fn new_api_key(s: &AppState, name: &str) -> Result<CreatedApiKey, ApiError> {
    let raw = name;
    let name = raw.trim();
    // Not only dots: `.` and `..` cannot be named in a URL path (clients resolve them).
    if !name.chars().any(|c| !c.is_whitespace() && c != '.')
        || raw.chars().count() > MAX_KEY_NAME
        || name.chars().any(|c| c.is_control() || c == '/')
    {
        return Err(FieldError::new(
            "name",
            format!(
                "must be 1 to {MAX_KEY_NAME} printable characters without '/', not only dots and white space"
            ),
        )
        .into());
    }
    let key = crate::keys::generate_api_key();
    let prefix: String = key
        .chars()
        .take(crate::keys::API_KEY_PREFIX.len() + 8)
        .collect();
    let info = s
        .store
        .create_api_key(name, &crate::keys::hash(&key), &prefix, s.clock.now())
        .await?;
    tracing::info!(name = %info.name, prefix = %info.prefix, "mobile api key created");
    Ok(CreatedApiKey { key, info })
}

pub async fn revoke_api_key(
    State(s): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<ApiKeyInfo>, ApiError> {
    let info = s.store.revoke_api_key(&name, s.clock.now()).await?;
    // Any cached "valid" answer for this collector goes; other collectors follow within the cache TTL.
    s.api_keys.clear();
    tracing::info!(name = %info.name, "mobile api key revoked");
    Ok(Json(info))
}

/// The query parameters of the performance reports, as the admin API and the dashboard take them.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PerfParams {
    pub trace: Option<String>,
    pub from: Option<String>,
    pub to: Option<String>,
    pub by: Option<String>,
    pub include_emulators: Option<String>,
    pub threshold: Option<String>,
    pub min_samples: Option<String>,
}

impl PerfParams {
    fn range(&self, today: NaiveDate) -> Result<(NaiveDate, NaiveDate), FieldError> {
        date_range(
            date("from", &self.from)?,
            date("to", &self.to)?,
            today,
            DEFAULT_DAYS,
        )
    }

    fn trace(&self, required: bool) -> Result<Option<TraceName>, FieldError> {
        match self.trace.as_deref() {
            None if required => Err(FieldError::new(
                "trace",
                format!("is required; one of {}", trace_names()),
            )),
            None => Ok(None),
            Some(t) => TraceName::parse(t).map(Some).ok_or_else(|| {
                FieldError::new(
                    "trace",
                    format!("{t:?} is not a trace name; one of {}", trace_names()),
                )
            }),
        }
    }

    fn query(&self, s: &AppState) -> Result<PerfQuery, FieldError> {
        let (from, to) = self.range(s.clock.now().date_naive())?;
        let by = match self.by.as_deref() {
            None | Some("all") => None,
            Some(b) => Some(Dimension::parse(b).filter(|d| *d != Dimension::All).ok_or_else(|| {
                FieldError::new(
                    "by",
                    format!("{b:?} is not a dimension; one of all, app_version, os_version, model, manufacturer, tablet, country, server_version"),
                )
            })?),
        };
        Ok(PerfQuery {
            trace: self.trace(true)?.expect("required"),
            from,
            to,
            by,
            include_emulators: flag("include_emulators", &self.include_emulators)?,
            min_group_size: s.config.reports.min_group_size,
        })
    }
}

fn trace_names() -> String {
    TraceName::ALL
        .iter()
        .map(|t| t.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

pub async fn percentiles(
    State(s): State<AppState>,
    Query(p): Query<PerfParams>,
) -> Result<Json<PercentileReport>, ApiError> {
    Ok(Json(percentile_report(&s, &p).await?))
}

/// The percentile report for these parameters (the admin API's and the dashboard's).
pub async fn percentile_report(s: &AppState, p: &PerfParams) -> Result<PercentileReport, ApiError> {
    let q = p.query(s)?;
    Ok(reports::percentiles(&*s.store, &q).await?)
}

/// The percentiles of `p`'s trace per UTC day over every group (the dashboard's per-day chart).
pub async fn percentiles_per_day(
    s: &AppState,
    p: &PerfParams,
) -> Result<Vec<(NaiveDate, beacon_wire::admin::PerfGroup)>, ApiError> {
    let q = p.query(s)?;
    Ok(reports::percentiles_per_day(&*s.store, &q).await?)
}

pub async fn histogram(
    State(s): State<AppState>,
    Query(p): Query<PerfParams>,
) -> Result<Json<HistogramReport>, ApiError> {
    Ok(Json(histogram_report(&s, &p).await?))
}

/// The histogram report for these parameters (the admin API's and the dashboard's).
pub async fn histogram_report(s: &AppState, p: &PerfParams) -> Result<HistogramReport, ApiError> {
    let q = p.query(s)?;
    Ok(reports::histogram(&*s.store, &q).await?)
}

/// `threshold`: a share (`0.1`) or a percentage (`10%`).
fn threshold(v: &Option<String>) -> Result<f64, FieldError> {
    let Some(raw) = v.as_deref() else {
        return Ok(0.1);
    };
    let (num, scale) = match raw.strip_suffix('%') {
        Some(n) => (n, 100.0),
        None => (raw, 1.0),
    };
    num.trim()
        .parse::<f64>()
        .ok()
        .map(|n| n / scale)
        .filter(|t| t.is_finite() && *t >= 0.0 && *t <= 100.0)
        .ok_or_else(|| {
            FieldError::new(
                "threshold",
                format!("must be a share like 0.1 or a percentage like 10%, got {raw:?}"),
            )
        })
}

pub async fn regressions(
    State(s): State<AppState>,
    Query(p): Query<PerfParams>,
) -> Result<Json<RegressionReport>, ApiError> {
    Ok(Json(regression_report(&s, &p).await?))
}

/// The regression report for these parameters (the admin API's and the dashboard's).
pub async fn regression_report(s: &AppState, p: &PerfParams) -> Result<RegressionReport, ApiError> {
    let (from, to) = p.range(s.clock.now().date_naive())?;
    let q = RegressionQuery {
        trace: p.trace(false)?,
        from,
        to,
        threshold: threshold(&p.threshold)?,
        min_samples: number("min_samples", &p.min_samples)?.unwrap_or(100),
        include_emulators: flag("include_emulators", &p.include_emulators)?,
        min_group_size: s.config.reports.min_group_size,
    };
    Ok(reports::regressions(&*s.store, &q).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thresholds_as_shares_or_percentages() {
        assert_eq!(threshold(&None).unwrap(), 0.1);
        assert_eq!(threshold(&Some("10%".into())).unwrap(), 0.1);
        assert_eq!(threshold(&Some("0.25".into())).unwrap(), 0.25);
        assert!(threshold(&Some("-1".into())).is_err());
        assert!(threshold(&Some("ten".into())).is_err());
    }
}
