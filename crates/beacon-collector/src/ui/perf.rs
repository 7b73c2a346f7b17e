//! `/ui/releases` (release health), `/ui/perf` (percentiles, histogram, p50 and p95 per day from
//! one read of the sketch rows) and
//! `/ui/regressions`: the admin API's reports for the same parameters, as pages.

use super::pages::{Format, RangeQuery, count, csv, page, table_links, thresholded_note};
use super::{Session, UiError};
use crate::AppState;
use crate::mobile::admin::{
    PerfParams, histogram_report, percentile_report, percentiles_per_day, regression_report,
};
use crate::security::admin::{ReportParams, release_report};
use axum::Extension;
use axum::extract::{Query, RawQuery, State};
use axum::response::Response;
use beacon_ui::chart::{self, BarChart, LineChart, Series};
use beacon_ui::filters;
use beacon_ui::layout::Nav;
use beacon_ui::table::{Cell, Column, Table};
use beacon_wire::mobile::{Dimension, TraceName};
use maud::html;

/// The trace a page shows when none is asked for.
const DEFAULT_TRACE: &str = "start:overall";

fn trace_options() -> Vec<(&'static str, &'static str)> {
    TraceName::ALL
        .iter()
        .map(|t| (t.as_str(), t.as_str()))
        .collect()
}

fn dimension_options() -> Vec<(&'static str, &'static str)> {
    Dimension::ALL
        .iter()
        .map(|d| (d.as_str(), d.as_str()))
        .collect()
}

/// `GET /ui/releases`: per server release, the servers on it, how many sent an error event in the
/// range, and the error-free share; below, the mobile app's releases with devices, trace events and
/// the p75 of app start and channel switch.
pub async fn releases(
    State(s): State<AppState>,
    Extension(session): Extension<Session>,
    Query(format): Query<Format>,
    Query(range): Query<RangeQuery>,
    Query(mut p): Query<ReportParams>,
    RawQuery(query): RawQuery,
) -> Result<Response, UiError> {
    range.apply(s.clock.now().date_naive(), &mut p.from, &mut p.to)?;
    // The app's releases: the same percentile report as /ui/perf, by app version. The three reports
    // are independent and asked at once (each on its own store connection).
    let app = |trace: &str| PerfParams {
        trace: Some(trace.into()),
        by: Some("app_version".into()),
        from: p.from.clone(),
        to: p.to.clone(),
        ..PerfParams::default()
    };
    let (start_params, switch_params) = (app("start:overall"), app("channel:switch_loaded"));
    let (r, start, switch) = tokio::try_join!(
        async { release_report(&s, &p).await.map_err(UiError::from) },
        async {
            percentile_report(&s, &start_params)
                .await
                .map_err(UiError::from)
        },
        async {
            percentile_report(&s, &switch_params)
                .await
                .map_err(UiError::from)
        },
    )?;
    let mut table = Table::new(vec![
        Column::text("version"),
        Column::number("servers"),
        Column::number("servers_with_errors"),
        Column::number("error_free_share"),
    ]);
    for row in &r.releases {
        table.push(vec![
            Cell::Text(row.version.clone()),
            count(row.servers),
            count(row.servers_with_errors),
            Cell::Ratio(row.error_free_share),
        ]);
    }
    if format.csv()? {
        return Ok(csv("releases", &table));
    }
    let mut apps = Table::new(vec![
        Column::text("app_version"),
        Column::number("devices"),
        Column::number("start_events"),
        Column::number("start_p75_ms"),
        Column::number("channel_switch_p75_ms"),
    ]);
    for g in &start.groups {
        let sw = switch.groups.iter().find(|x| x.value == g.value);
        apps.push(vec![
            Cell::Text(g.value.clone()),
            count(g.devices),
            count(g.count),
            Cell::Float(g.p75_ms),
            sw.map(|x| Cell::Float(x.p75_ms)).unwrap_or(Cell::Empty),
        ]);
    }
    let query = query.unwrap_or_default();
    let body = html! {
        (filters::form("/ui/releases", &[range.controls(r.from, r.to)]))
        section {
            h2 { "Server releases" }
            p.lede {
                "Servers by the release of their latest check from " (r.from) " to " (r.to)
                " (UTC days), and how many of them reported at least one error event in that time (events carry "
                code { "server_id" } "). " strong { (r.servers) } " servers, " (r.servers_with_errors) " with errors."
            }
            (thresholded_note(r.thresholded, r.min_group_size, "servers"))
            (chart::bars(&BarChart {
                title: "Error-free servers per release".into(),
                bars: r.releases.iter().map(|x| (x.version.clone(), (x.error_free_share * 1000.0).round() / 10.0)).collect(),
                unit: "%".into(),
            }))
            (table.html())
            (table_links("/ui/releases", &query, Some((r.from, r.to))))
        }
        section {
            h2 { "Mobile app releases" }
            p.lede { "Devices, app starts and the 75th percentile of app start and channel switch per app version." }
            (thresholded_note(start.thresholded || switch.thresholded, start.min_group_size, "devices"))
            (apps.html())
        }
    };
    Ok(page(&session, "Releases", Nav::Releases, body))
}

/// `GET /ui/perf?trace=&by=&from=&to=&include_emulators=`: percentiles by a dimension (table), the
/// duration histogram (chart) and p50 and p95 per day (chart).
pub async fn perf(
    State(s): State<AppState>,
    Extension(session): Extension<Session>,
    Query(format): Query<Format>,
    Query(range): Query<RangeQuery>,
    Query(mut p): Query<PerfParams>,
    RawQuery(query): RawQuery,
) -> Result<Response, UiError> {
    range.apply(s.clock.now().date_naive(), &mut p.from, &mut p.to)?;
    if p.trace.is_none() {
        p.trace = Some(DEFAULT_TRACE.into());
    }
    let r = percentile_report(&s, &p).await?;
    let mut table = Table::new(vec![
        Column::text("value"),
        Column::number("count"),
        Column::number("devices"),
        Column::number("mean_ms"),
        Column::number("p50_ms"),
        Column::number("p75_ms"),
        Column::number("p90_ms"),
        Column::number("p95_ms"),
        Column::number("p99_ms"),
    ]);
    for g in &r.groups {
        table.push(vec![
            Cell::Text(g.value.clone()),
            count(g.count),
            count(g.devices),
            Cell::Float(g.mean_ms),
            Cell::Float(g.p50_ms),
            Cell::Float(g.p75_ms),
            Cell::Float(g.p90_ms),
            Cell::Float(g.p95_ms),
            Cell::Float(g.p99_ms),
        ]);
    }
    if format.csv()? {
        return Ok(csv("perf", &table));
    }
    // The histogram over every group, and p50/p95 per day (one report per day of the range).
    let all = PerfParams {
        by: None,
        ..p.clone()
    };
    let h = histogram_report(&s, &all).await?;
    let buckets: Vec<(String, u64)> = h
        .groups
        .first()
        .map(|g| {
            g.buckets
                .iter()
                .map(|b| (format!("{:.0} ms", b.upper_ms), b.count))
                .collect()
        })
        .unwrap_or_default();
    let per_day = percentiles_per_day(&s, &p).await?;
    let p50 = per_day.iter().map(|(d, g)| (*d, g.p50_ms)).collect();
    let p95 = per_day.iter().map(|(d, g)| (*d, g.p95_ms)).collect();
    let trace = p.trace.clone().unwrap_or_default();
    let by = p.by.clone().unwrap_or_else(|| "all".into());
    let query = query.unwrap_or_default();
    let body = html! {
        (filters::form("/ui/perf", &[
            filters::select("trace", "Trace", &trace_options(), Some(&trace)),
            filters::select("by", "Group by", &dimension_options(), Some(&by)),
            range.controls(r.from, r.to),
        ]))
        p.lede {
            "Durations of " code { (trace) } " from " (r.from) " to " (r.to) " (UTC days), every percentile within "
            ((r.relative_accuracy * 100.0).round()) " % of the exact value."
        }
        (thresholded_note(r.thresholded, r.min_group_size, "devices"))
        section {
            h2 { "Percentiles" }
            (table.html())
            (table_links("/ui/perf", &query, Some((r.from, r.to))))
        }
        section {
            h2 { "Distribution" }
            (chart::histogram(&chart::Histogram { title: "Events per duration (upper bound)".into(), buckets }))
        }
        section {
            h2 { "Per day" }
            (chart::line(&LineChart {
                title: "p50 and p95 per day".into(),
                x_label: "Day".into(),
                y_label: "Milliseconds".into(),
                series: vec![
                    Series { name: "p50".into(), points: p50 },
                    Series { name: "p95".into(), points: p95 },
                ],
            }))
        }
    };
    Ok(page(&session, "Performance", Nav::Performance, body))
}

/// `GET /ui/regressions?trace=&threshold=&min_samples=&from=&to=`: each app version against the one
/// before it.
pub async fn regressions(
    State(s): State<AppState>,
    Extension(session): Extension<Session>,
    Query(format): Query<Format>,
    Query(range): Query<RangeQuery>,
    Query(mut p): Query<PerfParams>,
    RawQuery(query): RawQuery,
) -> Result<Response, UiError> {
    range.apply(s.clock.now().date_naive(), &mut p.from, &mut p.to)?;
    let r = regression_report(&s, &p).await?;
    let mut table = Table::new(vec![
        Column::text("trace"),
        Column::text("version"),
        Column::text("previous_version"),
        Column::number("samples"),
        Column::number("p75_ms"),
        Column::number("previous_p75_ms"),
        Column::number("p75_change"),
        Column::number("p95_ms"),
        Column::number("previous_p95_ms"),
        Column::number("p95_change"),
        Column::text("flagged"),
    ]);
    for c in &r.comparisons {
        table.push(vec![
            Cell::Text(c.trace.clone()),
            Cell::Text(c.version.clone()),
            Cell::Text(c.previous_version.clone()),
            count(c.samples),
            Cell::Float(c.p75_ms),
            Cell::Float(c.previous_p75_ms),
            Cell::Ratio(c.p75_change),
            Cell::Float(c.p95_ms),
            Cell::Float(c.previous_p95_ms),
            Cell::Ratio(c.p95_change),
            Cell::Text(if c.flagged { "yes" } else { "no" }.into()),
        ]);
    }
    if format.csv()? {
        return Ok(csv("regressions", &table));
    }
    let mut traces = vec![("", "Every trace")];
    traces.extend(trace_options());
    let threshold = p.threshold.clone().unwrap_or_else(|| "10%".into());
    let min_samples = p.min_samples.clone().unwrap_or_else(|| "100".into());
    let flagged = r.comparisons.iter().filter(|c| c.flagged).count();
    let query = query.unwrap_or_default();
    let body = html! {
        (filters::form("/ui/regressions", &[
            filters::select("trace", "Trace", &traces, Some(p.trace.as_deref().unwrap_or(""))),
            filters::text("threshold", "Threshold (share or %)", Some(&threshold)),
            filters::number("min_samples", "Minimum samples", Some(&min_samples), Some("1"), Some("1")),
            range.controls(r.from, r.to),
        ]))
        p.lede {
            strong { (flagged) } " of " (r.comparisons.len()) " comparisons flagged: p75 or p95 slower than the version before by more than "
            ((r.threshold * 100.0 * 10.0).round() / 10.0) " %, with at least " (r.min_samples) " samples on each side."
        }
        @if r.thresholded {
            p.notice role="note" { "Versions seen on fewer than " (r.min_group_size) " devices are left out." }
        }
        (table.html())
        (table_links("/ui/regressions", &query, Some((r.from, r.to))))
    };
    Ok(page(&session, "Regressions", Nav::Regressions, body))
}
