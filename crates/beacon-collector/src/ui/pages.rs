//! The dashboard's pages. Each is a GET whose query string holds its filters (the admin API's
//! parameters for the same report), computed by the same report function the admin API answers
//! with, and rendered with `beacon-ui`; `?format=csv` gives a page's main table as CSV.

use super::{Session, UiError};
use crate::AppState;
use crate::security::admin::{ReportParams, fleet_report, growth_report};
use axum::Extension;
use axum::extract::{Query, RawQuery, State};
use axum::http::header;
use axum::response::{Html, IntoResponse, Response};
use beacon_ui::chart::{self, LineChart, Series};
use beacon_ui::filters;
use beacon_ui::layout::{Nav, Page, Tile};
use beacon_ui::table::{Cell, Column, Table};
use beacon_wire::admin::{FleetDimension, FleetReport, GrowthReport};
use chrono::NaiveDate;
use maud::{Markup, html};
use serde::Deserialize;

/// The stylesheet's file name: content-hashed, so it can be cached for good.
pub fn css_file() -> String {
    format!("style.{}.css", beacon_ui::style_hash())
}

pub fn css_href() -> String {
    format!("/ui/static/{}", css_file())
}

/// A whole page for this session.
pub(super) fn page(session: &Session, title: &str, active: Nav, body: Markup) -> Response {
    let href = css_href();
    Html(
        beacon_ui::layout::page(&Page {
            title,
            active,
            user_label: Some(&session.label),
            csrf: Some(&session.csrf),
            body,
            static_css_href: &href,
        })
        .into_string(),
    )
    .into_response()
}

/// A table as a CSV download named `name.csv`.
pub(super) fn csv(name: &str, table: &Table) -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}.csv\""),
            ),
        ],
        table.csv(),
    )
        .into_response()
}

/// `format=csv` asks for the page's table as CSV.
#[derive(Debug, Default, Deserialize)]
pub struct Format {
    format: Option<String>,
}

impl Format {
    pub(super) fn csv(&self) -> Result<bool, UiError> {
        match self.format.as_deref() {
            None | Some("") | Some("html") => Ok(false),
            Some("csv") => Ok(true),
            Some(other) => Err(UiError(crate::ApiError::InvalidField(
                beacon_wire::FieldError::new(
                    "format",
                    format!("must be html or csv, got {other:?}"),
                ),
            ))),
        }
    }
}

/// `range=7d` (`30d`, `2w` …) on a page with dates: the last N UTC days up to today, in place of
/// `from` and `to`; empty or missing, the dates apply.
#[derive(Debug, Default, Deserialize)]
pub struct RangeQuery {
    range: Option<String>,
}

impl RangeQuery {
    /// Replaces `from` and `to` by the range's dates on `today`, when a range is given.
    pub(super) fn apply(
        &self,
        today: NaiveDate,
        from: &mut Option<String>,
        to: &mut Option<String>,
    ) -> Result<(), UiError> {
        let Some(text) = self.range.as_deref().filter(|r| !r.is_empty()) else {
            return Ok(());
        };
        let (f, t) = filters::RelativeRange::parse(text)
            .and_then(|r| r.resolve(today))
            .ok_or_else(|| {
                UiError(crate::ApiError::InvalidField(beacon_wire::FieldError::new(
                    "range",
                    format!(
                        "must be a number of days or weeks up to {} days (7d, 30d, 2w), got {text:?}",
                        filters::MAX_RANGE_DAYS
                    ),
                )))
            })?;
        *from = Some(f.to_string());
        *to = Some(t.to_string());
        Ok(())
    }

    /// The date fields of a filter form: the relative range and the two dates the page shows.
    pub(super) fn controls(&self, from: NaiveDate, to: NaiveDate) -> Markup {
        let mut options = vec![("", "Dates below")];
        options.extend(filters::RANGES);
        html! {
            (filters::select("range", "Range", &options, Some(self.range.as_deref().unwrap_or(""))))
            (filters::date_range(Some(from), Some(to)))
        }
    }
}

/// The links under a page's main table: its CSV, and a permalink with fixed dates when the view's
/// dates are relative.
pub(super) fn table_links(
    path: &str,
    query: &str,
    dates: Option<(NaiveDate, NaiveDate)>,
) -> Markup {
    let permalink = dates.and_then(|(from, to)| filters::permalink_to(path, query, from, to));
    html! {
        p.table-links {
            (beacon_ui::table::csv_link(path, query))
            @if let Some(link) = permalink { " · " (link) }
        }
    }
}

/// A count as a table cell.
pub(super) fn count(n: impl TryInto<i64>) -> Cell {
    Cell::Int(n.try_into().unwrap_or(i64::MAX))
}

/// The fleet table: one row per group, the admin API's fields as columns.
pub fn fleet_table(r: &FleetReport) -> Table {
    let mut t = Table::new(vec![
        Column::text(r.by.as_str()),
        Column::number("servers"),
        Column::number("users"),
        Column::number("activated_users"),
        Column::number("teams"),
    ]);
    for g in &r.groups {
        t.push(vec![
            Cell::Text(g.key.clone()),
            count(g.counts.servers),
            count(g.counts.users),
            count(g.counts.activated_users),
            count(g.counts.teams),
        ]);
    }
    t
}

/// `GET /ui/fleet`: servers by version, edition, OS, database or database version, and the size
/// distributions.
pub async fn fleet(
    State(s): State<AppState>,
    Extension(session): Extension<Session>,
    Query(format): Query<Format>,
    Query(range): Query<RangeQuery>,
    Query(mut p): Query<ReportParams>,
    RawQuery(query): RawQuery,
) -> Result<Response, UiError> {
    range.apply(s.clock.now().date_naive(), &mut p.from, &mut p.to)?;
    let r = fleet_report(&s, &p).await?;
    let table = fleet_table(&r);
    if format.csv()? {
        return Ok(csv("fleet", &table));
    }
    let by_options: Vec<(&str, &str)> = FleetDimension::ALL
        .iter()
        .map(|d| (d.as_str(), dimension_label(*d)))
        .collect();
    let bars = chart::bars(&chart::BarChart {
        title: format!("Servers by {}", dimension_label(r.by)),
        bars: r
            .groups
            .iter()
            .map(|g| (g.key.clone(), g.counts.servers as f64))
            .collect(),
        unit: "servers".into(),
    });
    let query = query.unwrap_or_default();
    let body = html! {
        p.lede {
            "Distinct servers at their latest check from " (r.from) " to " (r.to) " (UTC days): "
            strong { (r.total.servers) } " servers, " (r.total.activated_users) " activated users."
        }
        (filters::form("/ui/fleet", &[
            filters::select("by", "Group by", &by_options, Some(r.by.as_str())),
            range.controls(r.from, r.to),
        ]))
        (thresholded_note(r.thresholded, r.min_group_size, "servers"))
        (bars)
        section {
            h2 { "Servers by " (dimension_label(r.by)) }
            (table.html())
            (table_links("/ui/fleet", &query, Some((r.from, r.to))))
        }
        section {
            h2 { "Sizes" }
            (distribution("Users", &r.distributions.users))
            (distribution("Activated users", &r.distributions.activated_users))
            (distribution("Teams", &r.distributions.teams))
        }
    };
    Ok(page(&session, "Fleet", Nav::Fleet, body))
}

/// How a fleet dimension is named on a page.
fn dimension_label(d: FleetDimension) -> &'static str {
    match d {
        FleetDimension::Version => "version",
        FleetDimension::Edition => "edition",
        FleetDimension::Os => "operating system",
        FleetDimension::Db => "database",
        FleetDimension::Dbv => "database version",
    }
}

fn distribution(title: &str, buckets: &[beacon_wire::admin::Bucket]) -> Markup {
    chart::histogram(&chart::Histogram {
        title: format!("{title} per server"),
        buckets: buckets
            .iter()
            .map(|b| (b.range.clone(), b.servers))
            .collect(),
    })
}

/// The change that flagged a regression: the larger of the p75 and p95 changes, signed
/// (`p95 +31 %`).
fn slowdown(c: &beacon_wire::admin::Regression) -> String {
    let (name, change) = if c.p95_change > c.p75_change {
        ("p95", c.p95_change)
    } else {
        ("p75", c.p75_change)
    };
    format!("{name} {:+.0} %", change * 100.0)
}

/// Says when small groups were folded into `other` (k-anonymity).
/// `unit` is what a group counts: `servers` or `devices`.
pub(super) fn thresholded_note(thresholded: bool, k: u64, unit: &str) -> Markup {
    html! {
        @if thresholded {
            p.notice role="note" {
                "Groups of fewer than " (k) " " (unit) " are shown together as " code { "other" }
                " so no single installation can be picked out."
            }
        }
    }
}

/// The growth table: one row per day.
pub fn growth_table(r: &GrowthReport) -> Table {
    let mut t = Table::new(vec![
        Column::text("day"),
        Column::number("servers"),
        Column::number("new"),
        Column::number("gone"),
    ]);
    for d in &r.days {
        t.push(vec![
            Cell::Text(d.day.to_string()),
            count(d.servers),
            count(d.new),
            count(d.gone),
        ]);
    }
    t
}

/// `GET /ui/growth`: servers, new and gone per day.
pub async fn growth(
    State(s): State<AppState>,
    Extension(session): Extension<Session>,
    Query(format): Query<Format>,
    Query(range): Query<RangeQuery>,
    Query(mut p): Query<ReportParams>,
    RawQuery(query): RawQuery,
) -> Result<Response, UiError> {
    range.apply(s.clock.now().date_naive(), &mut p.from, &mut p.to)?;
    let r = growth_report(&s, &p).await?;
    let table = growth_table(&r);
    if format.csv()? {
        return Ok(csv("growth", &table));
    }
    let series = |name: &str, f: fn(&beacon_wire::admin::GrowthDay) -> u64| Series {
        name: name.into(),
        points: r.days.iter().map(|d| (d.day, f(d) as f64)).collect(),
    };
    let query = query.unwrap_or_default();
    let body = html! {
        p.lede { "Servers checking in per UTC day from " (r.from) " to " (r.to) "; a server is gone after "
            (r.gone_after_days) " days without a check." }
        (filters::form("/ui/growth", &[range.controls(r.from, r.to)]))
        (chart::line(&LineChart {
            title: "Servers per day".into(),
            x_label: "Day (UTC)".into(),
            y_label: "Servers".into(),
            series: vec![series("servers", |d| d.servers), series("new", |d| d.new), series("gone", |d| d.gone)],
        }))
        section {
            h2 { "Per day" }
            (table.html())
            (table_links("/ui/growth", &query, Some((r.from, r.to))))
        }
    };
    Ok(page(&session, "Growth", Nav::Growth, body))
}

/// `GET /ui/`: the overview — servers checked in today with a 30-day trend, the newest bulletins
/// with their exposure, the top issues of the last 24 hours, the regressions flagged; each tile
/// links to its page.
pub async fn overview(
    State(s): State<AppState>,
    Extension(session): Extension<Session>,
) -> Result<Response, UiError> {
    // The four reports are independent: asked at once, the page waits for the slowest, not the sum
    // (each takes its own store connection).
    let since = s.clock.now() - chrono::Duration::hours(24);
    let report_params = ReportParams::default();
    let (growth, exposure, issues, regressions) = tokio::try_join!(
        async {
            growth_report(&s, &report_params)
                .await
                .map_err(UiError::from)
        },
        async {
            crate::security::admin::exposure_report(&s, &report_params)
                .await
                .map_err(UiError::from)
        },
        async {
            crate::sentry::admin::issue_list(
                &s,
                crate::sentry::admin::IssueParams {
                    sort: Some("count".into()),
                    limit: Some("200".into()),
                    ..Default::default()
                },
            )
            .await
            .map_err(UiError::from)
        },
        async {
            crate::mobile::admin::regression_report(&s, &Default::default())
                .await
                .map_err(UiError::from)
        },
    )?;
    let today = growth
        .days
        .last()
        .map(|d| d.servers)
        .unwrap_or(0)
        .to_string();
    let trend: Vec<f64> = growth.days.iter().map(|d| d.servers as f64).collect();

    let mut newest: Vec<_> = exposure.bulletins.iter().collect();
    newest.sort_by_key(|b| std::cmp::Reverse(b.published_at));
    newest.truncate(3);
    let exposed = newest.first().map(|b| b.servers).unwrap_or(0).to_string();

    // The issues with the most events among those seen in the last 24 hours.
    let recent: Vec<_> = issues
        .iter()
        .filter(|i| i.last_seen >= since)
        .take(5)
        .collect();

    let flagged: Vec<_> = regressions
        .comparisons
        .iter()
        .filter(|c| c.flagged)
        .collect();

    let issues_count = recent.len().to_string();
    let flagged_count = flagged.len().to_string();
    let body = beacon_ui::layout::tiles(&[
        Tile {
            title: "Servers checked in today",
            href: "/ui/growth",
            value: &today,
            note: Some("30-day trend (UTC days)"),
            body: Some(chart::sparkline(
                &trend,
                "Servers per day, last 30 days (UTC)",
            )),
        },
        Tile {
            title: "Newest bulletins",
            href: "/ui/bulletins",
            value: &exposed,
            note: Some("servers exposed to the newest bulletin"),
            body: Some(html! {
                ul {
                    @for b in &newest {
                        li { a href=(format!("/ui/bulletins/{}", b.id)) { (b.id) } ": " (b.servers) " exposed" }
                    }
                    @if newest.is_empty() { li.muted { "No bulletins in force." } }
                }
            }),
        },
        Tile {
            title: "Issues of the last 24 hours",
            href: "/ui/issues?sort=count",
            value: &issues_count,
            note: Some("the most frequent first"),
            body: Some(html! {
                ul {
                    @for i in &recent {
                        li { a href=(format!("/ui/issues/{}", i.id)) { (i.title) } " (" (i.count) ")" }
                    }
                    @if recent.is_empty() { li.muted { "No events in the last 24 hours." } }
                }
            }),
        },
        Tile {
            title: "Regressions flagged",
            href: "/ui/regressions",
            value: &flagged_count,
            note: Some("app versions slower than the one before"),
            body: Some(html! {
                ul {
                    @for c in flagged.iter().take(5) {
                        li { code { (c.trace) } " " (c.version) ": " (slowdown(c)) }
                    }
                    @if flagged.is_empty() { li.muted { "None in the last 30 days." } }
                }
            }),
        },
    ]);
    Ok(page(&session, "Overview", Nav::Overview, body))
}
