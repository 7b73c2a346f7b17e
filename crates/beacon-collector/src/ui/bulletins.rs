//! `/ui/bulletins`: the list with each bulletin's exposure, publishing (the same validation as the
//! admin API and the CLI: `Bulletin::from_new`), retracting, and one bulletin's exposure by version
//! with its patch-adoption chart.

use super::pages::{Format, count, csv, page, thresholded_note};
use super::{Session, UiError, encode};
use crate::AppState;
use crate::error::ApiError;
use crate::security::admin::{ReportParams, exposure_report};
use axum::Extension;
use axum::extract::{Form, Path, Query, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use beacon_ui::chart::{self, LineChart, Series};
use beacon_ui::filters;
use beacon_ui::layout::{Nav, csrf_field, notice};
use beacon_ui::table::{Cell, Column, Table};
use beacon_wire::bulletin::{Bulletin, NewBulletin, Severity};
use maud::{Markup, html};
use serde::Deserialize;
use std::collections::HashMap;

const SEVERITIES: [(&str, &str); 4] = [
    ("low", "Low"),
    ("medium", "Medium"),
    ("high", "High"),
    ("critical", "Critical"),
];

/// The bulletins table: the admin API's fields and, for bulletins in force, their exposure.
fn list_table(bulletins: &[Bulletin], exposed: &HashMap<String, u64>) -> Table {
    let mut t = Table::new(vec![
        Column::text("id"),
        Column::text("title"),
        Column::text("severity"),
        Column::text("affected"),
        Column::text("fixed_in"),
        Column::text("published_at"),
        Column::text("retracted_at"),
        Column::number("exposed_servers"),
    ]);
    for b in bulletins.iter().rev() {
        t.push(vec![
            Cell::link(format!("/ui/bulletins/{}", encode(&b.id)), b.id.clone()),
            Cell::Text(b.title.clone()),
            Cell::Text(b.severity.as_str().into()),
            Cell::Text(b.affected.clone()),
            b.fixed_in.clone().map(Cell::Text).unwrap_or(Cell::Empty),
            Cell::Text(b.published_at.to_rfc3339()),
            b.retracted_at
                .map(|t| Cell::Text(t.to_rfc3339()))
                .unwrap_or(Cell::Empty),
            exposed.get(&b.id).map(|n| count(*n)).unwrap_or(Cell::Empty),
        ]);
    }
    t
}

/// What the publish form holds, kept when it is shown again with an error.
#[derive(Debug, Default, Deserialize)]
pub struct PublishForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    severity: String,
    #[serde(default)]
    affected: String,
    #[serde(default)]
    fixed_in: String,
    #[serde(default)]
    body: String,
}

fn publish_form(session: &Session, f: &PublishForm, error: Option<&str>) -> Markup {
    html! {
        section {
            h2 id="publish" { "Publish a bulletin" }
            @if let Some(e) = error { (notice("error", e)) }
            form.stack method="post" action="/ui/bulletins" aria-labelledby="publish" {
                (csrf_field(&session.csrf))
                (filters::text("id", "Id (e.g. BSA-2026-001)", Some(&f.id)))
                (filters::text("title", "Title", Some(&f.title)))
                (filters::select("severity", "Severity", &SEVERITIES, Some(if f.severity.is_empty() { "high" } else { &f.severity })))
                (filters::text("affected", "Affected versions (a semver requirement, e.g. >=5.30.0, <5.37.2)", Some(&f.affected)))
                (filters::text("fixed_in", "Fixed in (optional)", Some(&f.fixed_in)))
                div.field {
                    label for="bulletin-body" { "Body (HTML, served at /bulletins/{id})" }
                    textarea id="bulletin-body" name="body" rows="6" { (f.body) }
                }
                div { button type="submit" { "Publish" } }
            }
        }
    }
}

/// `GET /ui/bulletins`.
pub async fn list(
    State(s): State<AppState>,
    Extension(session): Extension<Session>,
    Query(format): Query<Format>,
    RawQuery(query): RawQuery,
) -> Result<Response, UiError> {
    list_page(
        &s,
        &session,
        &format,
        query.as_deref(),
        &PublishForm::default(),
        None,
    )
    .await
}

async fn list_page(
    s: &AppState,
    session: &Session,
    format: &Format,
    query: Option<&str>,
    form: &PublishForm,
    error: Option<(StatusCode, &str)>,
) -> Result<Response, UiError> {
    let bulletins = s.store.bulletins().await?;
    let exposure = exposure_report(s, &ReportParams::default()).await?;
    let exposed: HashMap<String, u64> = exposure
        .bulletins
        .iter()
        .map(|b| (b.id.clone(), b.servers))
        .collect();
    let table = list_table(&bulletins, &exposed);
    if format.csv()? {
        return Ok(csv("bulletins", &table));
    }
    let body = html! {
        p.lede {
            "Security bulletins, newest first. Exposure: servers whose latest check in the last "
            (exposure.window_days) " days (to " (exposure.as_of) ", UTC) is on an affected version, of "
            (exposure.servers_in_window) " that checked in."
        }
        (table.html())
        p { (beacon_ui::table::csv_link("/ui/bulletins", query.unwrap_or_default())) }
        (publish_form(session, form, error.map(|e| e.1)))
    };
    let mut resp = page(session, "Bulletins", Nav::Bulletins, body);
    if let Some((status, _)) = error {
        *resp.status_mut() = status;
    }
    Ok(resp)
}

/// `POST /ui/bulletins`: publishes, then shows the new bulletin; a refusal shows the form again
/// with what was typed and why.
pub async fn publish(
    State(s): State<AppState>,
    Extension(session): Extension<Session>,
    Form(f): Form<PublishForm>,
) -> Result<Response, UiError> {
    session.check_csrf(&f.csrf)?;
    let severity = SEVERITIES
        .iter()
        .position(|(v, _)| *v == f.severity)
        .map(|i| {
            [
                Severity::Low,
                Severity::Medium,
                Severity::High,
                Severity::Critical,
            ][i]
        });
    let Some(severity) = severity else {
        let msg = "severity: must be low, medium, high or critical";
        return list_page(
            &s,
            &session,
            &Format::default(),
            None,
            &f,
            Some((StatusCode::BAD_REQUEST, msg)),
        )
        .await;
    };
    let new = NewBulletin {
        id: f.id.trim().to_string(),
        title: f.title.trim().to_string(),
        severity,
        affected: f.affected.trim().to_string(),
        fixed_in: Some(f.fixed_in.trim().to_string()).filter(|v| !v.is_empty()),
        body: f.body.clone(),
        published_at: None,
    };
    let refusal = match Bulletin::from_new(new, s.clock.now()) {
        Err(e) => Err(e.to_string()),
        Ok(bulletin) => match s.store.insert_bulletin(&bulletin).await {
            Ok(()) => Ok(bulletin),
            Err(beacon_store::StoreError::Conflict(_)) => Err(format!(
                "a bulletin with the id {} exists already",
                bulletin.id
            )),
            Err(e) => return Err(e.into()),
        },
    };
    let bulletin = match refusal {
        Ok(b) => b,
        Err(msg) => {
            let error = Some((StatusCode::BAD_REQUEST, msg.as_str()));
            return list_page(&s, &session, &Format::default(), None, &f, error).await;
        }
    };
    crate::security::admin::refresh(&s).await;
    tracing::info!(bulletin = %bulletin.id, by = %session.label, "bulletin published from the dashboard");
    Ok(Redirect::to(&format!("/ui/bulletins/{}", encode(&bulletin.id))).into_response())
}

/// The exposure-by-version table of one bulletin.
fn by_version_table(b: &beacon_wire::admin::BulletinExposure) -> Table {
    let mut t = Table::new(vec![
        Column::text("version"),
        Column::number("servers"),
        Column::number("activated_users"),
    ]);
    for g in &b.by_version {
        t.push(vec![
            Cell::Text(g.key.clone()),
            count(g.counts.servers),
            count(g.counts.activated_users),
        ]);
    }
    t
}

/// `GET /ui/bulletins/{id}`: exposure by version and the patch-adoption chart.
pub async fn show(
    State(s): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Query(format): Query<Format>,
    Query(p): Query<ReportParams>,
    RawQuery(query): RawQuery,
) -> Result<Response, UiError> {
    let bulletin = s
        .store
        .bulletin(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("bulletin {id} not found")))?;
    let params = ReportParams {
        bulletin: Some(id.clone()),
        ..p
    };
    let r = exposure_report(&s, &params).await?;
    let Some(b) = r.bulletins.first() else {
        return Err(UiError(ApiError::NotFound(format!(
            "bulletin {id} not found"
        ))));
    };
    let table = by_version_table(b);
    if format.csv()? {
        return Ok(csv(&format!("bulletin-{}", encode(&id)), &table));
    }
    let adoption = chart::line(&LineChart {
        title: "Servers on an affected version per day".into(),
        x_label: "Day".into(),
        y_label: "Servers".into(),
        series: vec![
            Series {
                name: "affected".into(),
                points: b
                    .timeline
                    .iter()
                    .map(|d| (d.day, d.affected_servers as f64))
                    .collect(),
            },
            Series {
                name: "checked in".into(),
                points: b
                    .timeline
                    .iter()
                    .map(|d| (d.day, d.servers_checked as f64))
                    .collect(),
            },
        ],
    });
    let path = format!("/ui/bulletins/{}", encode(&id));
    let body = html! {
        dl.facts {
            dt { "Title" } dd { (bulletin.title) }
            dt { "Severity" } dd { (bulletin.severity.as_str()) }
            dt { "Affected" } dd { code { (bulletin.affected) } }
            @if let Some(f) = &bulletin.fixed_in { dt { "Fixed in" } dd { (f) } }
            dt { "Published" } dd { (bulletin.published_at.format("%Y-%m-%d %H:%M UTC")) }
            @if let Some(t) = bulletin.retracted_at { dt { "Retracted" } dd { (t.format("%Y-%m-%d %H:%M UTC")) } }
            dt { "Public page" } dd { a href=(format!("/bulletins/{}", encode(&id))) { "/bulletins/" (id) } }
        }
        p.lede {
            strong { (b.servers) } " servers (" (b.activated_users) " activated users) had their latest check in the "
            (r.window_days) " days to " (r.as_of) " (UTC) on an affected version, of " (r.servers_in_window) " that checked in."
        }
        (thresholded_note(r.thresholded, r.min_group_size, "servers"))
        section {
            h2 { "Exposure by version" }
            (table.html())
            p { (beacon_ui::table::csv_link(&path, query.as_deref().unwrap_or_default())) }
        }
        section {
            h2 { "Patch adoption" }
            (adoption)
        }
        @if bulletin.retracted_at.is_none() {
            section {
                h2 { "Retract" }
                form method="post" action=(format!("{path}/retract")) {
                    (csrf_field(&session.csrf))
                    p { "A retracted bulletin is no longer sent to servers. This cannot be undone." }
                    button.danger type="submit" { "Retract " (id) }
                }
            }
        }
    };
    Ok(page(
        &session,
        &format!("Bulletin {id}"),
        Nav::Bulletins,
        body,
    ))
}

#[derive(Debug, Deserialize)]
pub struct CsrfOnly {
    #[serde(default)]
    csrf: String,
}

/// `POST /ui/bulletins/{id}/retract`.
pub async fn retract(
    State(s): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Form(f): Form<CsrfOnly>,
) -> Result<Response, UiError> {
    session.check_csrf(&f.csrf)?;
    let b = s.store.retract_bulletin(&id, s.clock.now()).await?;
    crate::security::admin::refresh(&s).await;
    tracing::info!(bulletin = %b.id, by = %session.label, "bulletin retracted from the dashboard");
    Ok(Redirect::to(&format!("/ui/bulletins/{}", encode(&id))).into_response())
}
