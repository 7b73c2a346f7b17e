//! `/ui/issues`: error issues with the admin API's filters and sorts, and one issue with its counts
//! and its latest event's stack.

use super::pages::{Format, count, csv, page};
use super::{Session, UiError};
use crate::AppState;
use crate::error::ApiError;
use crate::sentry::admin::{IssueParams, issue_list};
use axum::Extension;
use axum::extract::{Path, Query, RawQuery, State};
use axum::response::Response;
use beacon_ui::chart::{self, LineChart, Series};
use beacon_ui::filters;
use beacon_ui::layout::Nav;
use beacon_ui::table::{Cell, Column, Table};
use beacon_wire::admin::{CountBy, IssueSummary};
use beacon_wire::sentry::event::StoredException;
use chrono::Days;
use maud::{Markup, html};
use serde::Deserialize;
use std::collections::HashMap;

const LEVELS: [(&str, &str); 6] = [
    ("", "Any level"),
    ("debug", "Debug"),
    ("info", "Info"),
    ("warning", "Warning"),
    ("error", "Error"),
    ("fatal", "Fatal"),
];
const SORTS: [(&str, &str); 2] = [("last-seen", "Last seen"), ("count", "Events")];

/// Days in an issue's sparkline, today included.
const SPARKLINE_DAYS: u64 = 14;

/// The issues table: the admin API's fields, and after the title (on the page only) a sparkline of
/// events per day over the last [`SPARKLINE_DAYS`] UTC days.
fn list_table(issues: &[IssueSummary], per_day: &HashMap<i64, Vec<f64>>) -> Table {
    let mut t = Table::new(vec![
        Column::number("id"),
        Column::text("title"),
        Column::html_only("last 14 days (UTC)"),
        Column::text("culprit"),
        Column::text("level"),
        Column::number("project_id"),
        Column::text("first_seen"),
        Column::text("last_seen"),
        Column::number("count"),
        Column::number("servers"),
    ]);
    for i in issues {
        t.push(vec![
            Cell::link(format!("/ui/issues/{}", i.id), i.id.to_string()),
            Cell::link(format!("/ui/issues/{}", i.id), i.title.clone()),
            {
                let points = per_day.get(&i.id).map(Vec::as_slice).unwrap_or_default();
                Cell::markup(
                    chart::sparkline(points, &format!("Events of issue {} per day", i.id)),
                    "",
                )
            },
            i.culprit.clone().map(Cell::Text).unwrap_or(Cell::Empty),
            Cell::Text(i.level.as_str().into()),
            count(i.project_id),
            // Short on the page; CSV keeps the admin API's RFC 3339.
            when(i.first_seen),
            when(i.last_seen),
            count(i.count),
            count(i.servers),
        ]);
    }
    t
}

/// `GET /ui/issues?project=&release=&environment=&level=&sort=&limit=`.
pub async fn list(
    State(s): State<AppState>,
    Extension(session): Extension<Session>,
    Query(format): Query<Format>,
    Query(p): Query<IssueParams>,
    RawQuery(query): RawQuery,
) -> Result<Response, UiError> {
    let issues = issue_list(&s, p.clone()).await?;
    if format.csv()? {
        return Ok(csv("issues", &list_table(&issues, &HashMap::new())));
    }
    let table = list_table(&issues, &sparklines(&s, &issues).await?);
    let body = html! {
        (filters::form("/ui/issues", &[
            filters::text("project", "Project id", p.project.as_deref()),
            filters::text("release", "Release", p.release.as_deref()),
            filters::text("environment", "Environment", p.environment.as_deref()),
            filters::select("level", "Level", &LEVELS, Some(p.level.as_deref().unwrap_or(""))),
            filters::select("sort", "Sort by", &SORTS, Some(p.sort.as_deref().unwrap_or("last-seen"))),
        ]))
        p.lede { (issues.len()) " issues. Times are UTC." }
        (table.html())
        p { (beacon_ui::table::csv_link("/ui/issues", query.as_deref().unwrap_or_default())) }
    };
    Ok(page(&session, "Issues", Nav::Issues, body))
}

/// A time as `2026-11-19 12:00` on the page and RFC 3339 in CSV.
fn when(t: chrono::DateTime<chrono::Utc>) -> Cell {
    Cell::markup(
        html! { time datetime=(t.to_rfc3339()) { (t.format("%Y-%m-%d %H:%M")) } },
        t.to_rfc3339(),
    )
}

/// Events per day of each listed issue over the last [`SPARKLINE_DAYS`] UTC days (zeros included),
/// from one store read.
async fn sparklines(
    s: &AppState,
    issues: &[IssueSummary],
) -> Result<HashMap<i64, Vec<f64>>, UiError> {
    let to = s.clock.now().date_naive();
    let from = to - Days::new(SPARKLINE_DAYS - 1);
    let ids: Vec<i64> = issues.iter().map(|i| i.id).collect();
    let counts = s
        .store
        .issue_day_counts(&ids, from, to)
        .await
        .map_err(ApiError::from)?;
    let mut out: HashMap<i64, Vec<f64>> = ids
        .iter()
        .map(|id| (*id, vec![0.0; SPARKLINE_DAYS as usize]))
        .collect();
    for c in counts {
        let slot = (c.day - from).num_days();
        if let (Some(days), Ok(slot)) = (out.get_mut(&c.issue_id), usize::try_from(slot))
            && let Some(v) = days.get_mut(slot)
        {
            *v = c.count as f64;
        }
    }
    Ok(out)
}

fn exception(e: &StoredException) -> Markup {
    html! {
        div.exception {
            h3 {
                (e.ty.as_deref().unwrap_or("Error"))
                @if let Some(v) = &e.value { ": " (v) }
            }
            @if e.frames.is_empty() {
                p.muted { "No stack frames." }
            } @else {
                ol.frames reversed {
                    // Newest frame first, as Sentry shows them.
                    @for f in e.frames.iter().rev() {
                        @let in_app = f.in_app == Some(true);
                        li class=(if in_app { "frame in-app" } else { "frame" }) {
                            code {
                                (f.function.as_deref().unwrap_or("?"))
                            }
                            " in "
                            (f.filename.as_deref().or(f.module.as_deref()).unwrap_or("?"))
                            @if let Some(l) = f.lineno { " at line " (l) }
                            @if in_app { " " span.badge { "in app" } }
                        }
                    }
                }
            }
        }
    }
}

/// `table=` on an issue's page: which of its tables `format=csv` gives (`release`, the default;
/// `environment`; `day`).
#[derive(Debug, Default, Deserialize)]
pub struct WhichTable {
    table: Option<String>,
}

/// Counts per release or environment; events without one show as empty.
fn counts_table(name: &str, counts: &[CountBy<Option<String>>]) -> Table {
    let mut t = Table::new(vec![Column::text(name), Column::number("count")]);
    for c in counts {
        t.push(vec![
            c.key.clone().map(Cell::Text).unwrap_or(Cell::Empty),
            count(c.count),
        ]);
    }
    t
}

/// `GET /ui/issues/{id}?format=csv&table=release|environment|day`.
pub async fn show(
    State(s): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Query(format): Query<Format>,
    Query(which): Query<WhichTable>,
    RawQuery(query): RawQuery,
) -> Result<Response, UiError> {
    let id: i64 = crate::error::path_number("id", &id)?;
    let d = s
        .store
        .issue(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("issue {id} not found")))?;
    let by_release = counts_table("release", &d.by_release);
    let by_environment = counts_table("environment", &d.by_environment);
    let mut by_day = Table::new(vec![Column::text("day"), Column::number("count")]);
    for c in &d.by_day {
        by_day.push(vec![Cell::Text(c.key.to_string()), count(c.count)]);
    }
    if format.csv()? {
        let (name, table) = match which.table.as_deref() {
            None | Some("" | "release") => ("releases", &by_release),
            Some("environment") => ("environments", &by_environment),
            Some("day") => ("days", &by_day),
            Some(other) => {
                return Err(UiError(ApiError::InvalidField(
                    beacon_wire::FieldError::new(
                        "table",
                        format!("must be release, environment or day, got {other:?}"),
                    ),
                )));
            }
        };
        return Ok(csv(&format!("issue-{id}-{name}"), table));
    }
    let i = &d.issue;
    let ev = &d.latest_event;
    let per_day = chart::line(&LineChart {
        title: "Events per day (UTC)".into(),
        x_label: "Day".into(),
        y_label: "Events".into(),
        series: vec![Series {
            name: "events".into(),
            points: d.by_day.iter().map(|c| (c.key, c.count as f64)).collect(),
        }],
    });
    let path = format!("/ui/issues/{id}");
    let query = query.unwrap_or_default();
    let csv_of = |table: &str| {
        let q = format!("{query}&table={table}");
        beacon_ui::table::csv_link(&path, &q)
    };
    let body = html! {
        dl.facts {
            dt { "Culprit" } dd { (i.culprit.as_deref().unwrap_or("—")) }
            dt { "Level" } dd { (i.level.as_str()) }
            dt { "Project" } dd { (i.project_id) }
            dt { "First seen" } dd { (i.first_seen.format("%Y-%m-%d %H:%M UTC")) }
            dt { "Last seen" } dd { (i.last_seen.format("%Y-%m-%d %H:%M UTC")) }
            dt { "Events" } dd { (i.count) }
            dt { "Servers" } dd { (i.servers) }
        }
        section {
            (per_day)
            p { (csv_of("day")) }
        }
        div.columns {
            section {
                h2 { "Events per release" }
                (by_release.html())
                p { (csv_of("release")) }
            }
            section {
                h2 { "Events per environment" }
                (by_environment.html())
                p { (csv_of("environment")) }
            }
        }
        section {
            h2 { "Latest event" }
            p.muted {
                "Event " code { (ev.event_id) } " at " (ev.timestamp.format("%Y-%m-%d %H:%M:%S UTC"))
                @if let Some(r) = &ev.release { ", release " (r) }
                @if let Some(e) = &ev.environment { ", environment " (e) }
                ". Frames from the application itself are marked “in app”."
            }
            @if let Some(m) = &ev.message { p { (m) } }
            @for e in &ev.exceptions { (exception(e)) }
        }
    };
    Ok(page(&session, &i.title, Nav::Issues, body))
}
