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
use beacon_wire::admin::IssueSummary;
use beacon_wire::sentry::event::StoredException;
use maud::{Markup, html};

const LEVELS: [(&str, &str); 6] = [
    ("", "Any level"),
    ("debug", "Debug"),
    ("info", "Info"),
    ("warning", "Warning"),
    ("error", "Error"),
    ("fatal", "Fatal"),
];
const SORTS: [(&str, &str); 2] = [("last-seen", "Last seen"), ("count", "Events")];

/// The issues table: the admin API's fields.
fn list_table(issues: &[IssueSummary]) -> Table {
    let mut t = Table::new(vec![
        Column::number("id"),
        Column::text("title"),
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
            i.culprit.clone().map(Cell::Text).unwrap_or(Cell::Empty),
            Cell::Text(i.level.as_str().into()),
            count(i.project_id),
            Cell::Text(i.first_seen.to_rfc3339()),
            Cell::Text(i.last_seen.to_rfc3339()),
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
    let table = list_table(&issues);
    if format.csv()? {
        return Ok(csv("issues", &table));
    }
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

/// `GET /ui/issues/{id}`.
pub async fn show(
    State(s): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Query(format): Query<Format>,
    RawQuery(query): RawQuery,
) -> Result<Response, UiError> {
    let id: i64 = crate::error::path_number("id", &id)?;
    let d = s
        .store
        .issue(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("issue {id} not found")))?;
    let mut by_release = Table::new(vec![Column::text("release"), Column::number("count")]);
    for r in &d.by_release {
        by_release.push(vec![
            r.key.clone().map(Cell::Text).unwrap_or(Cell::Empty),
            count(r.count),
        ]);
    }
    if format.csv()? {
        return Ok(csv(&format!("issue-{id}-releases"), &by_release));
    }
    let i = &d.issue;
    let ev = &d.latest_event;
    let per_day = chart::line(&LineChart {
        title: "Events per day".into(),
        x_label: "Day".into(),
        y_label: "Events".into(),
        series: vec![Series {
            name: "events".into(),
            points: d.by_day.iter().map(|c| (c.key, c.count as f64)).collect(),
        }],
    });
    let path = format!("/ui/issues/{id}");
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
            h2 { "Events per day" }
            (per_day)
        }
        section {
            h2 { "Events per release" }
            (by_release.html())
            p { (beacon_ui::table::csv_link(&path, query.as_deref().unwrap_or_default())) }
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
