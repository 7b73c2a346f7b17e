//! `/ui/settings`: admin tokens (a new one shown once; revoke), projects with their DSN keys (create;
//! enable, disable, rate limit), mobile API keys (a new one shown once; revoke), the latest dead
//! letters. Every change is a POST with the session's CSRF token, through the same functions as the
//! admin API; a secret is shown on the page that made it and never again.

use super::pages::page;
use super::{Session, UiError, encode};
use crate::AppState;
use crate::mobile::admin::new_api_key;
use crate::sentry::admin::{change_key, new_project};
use axum::Extension;
use axum::extract::{Form, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use beacon_ui::filters;
use beacon_ui::layout::{Nav, csrf_field};
use beacon_ui::table::{Cell, Column, Table};
use beacon_wire::admin::KeyUpdate;
use maud::{Markup, html};
use serde::Deserialize;

/// Dead letters listed on the page.
const DEAD_LETTERS: u32 = 20;

/// A secret made by the request that shows the page: the only time it is shown.
struct Shown<'a> {
    what: &'a str,
    secret: &'a str,
}

async fn settings_page(
    s: &AppState,
    session: &Session,
    shown: Option<Shown<'_>>,
) -> Result<Response, UiError> {
    let tokens = s.store.admin_tokens().await?;
    let projects = s.store.projects().await?;
    let api_keys = s.store.api_keys().await?;
    let letters = s.store.dead_letters(None, DEAD_LETTERS).await?;
    let post = |action: String, label: &str, class: &str| -> Markup {
        html! {
            form.inline method="post" action=(action) {
                (csrf_field(&session.csrf))
                button class=(class) type="submit" { (label) }
            }
        }
    };
    let mut token_table = Table::new(vec![
        Column::text("id"),
        Column::text("label"),
        Column::text("created_at"),
        Column::text(""),
    ]);
    for t in &tokens {
        token_table.push(vec![
            Cell::Text(t.id.clone()),
            Cell::Text(t.label.clone()),
            Cell::Text(t.created_at.to_rfc3339()),
            // The last token cannot be revoked (nobody could log in): no button for it.
            if tokens.len() > 1 {
                Cell::markup(
                    post(
                        format!("/ui/settings/tokens/{}/revoke", t.id),
                        "Revoke",
                        "danger",
                    ),
                    "",
                )
            } else {
                Cell::Empty
            },
        ]);
    }
    let mut key_table = Table::new(vec![
        Column::text("name"),
        Column::text("prefix"),
        Column::text("created_at"),
        Column::text("revoked_at"),
        Column::text(""),
    ]);
    for k in &api_keys {
        key_table.push(vec![
            Cell::Text(k.name.clone()),
            Cell::Text(k.prefix.clone()),
            Cell::Text(k.created_at.to_rfc3339()),
            k.revoked_at
                .map(|t| Cell::Text(t.to_rfc3339()))
                .unwrap_or(Cell::Empty),
            match k.revoked_at {
                Some(_) => Cell::Empty,
                None => Cell::markup(
                    post(
                        format!("/ui/settings/apikeys/{}/revoke", encode(&k.name)),
                        "Revoke",
                        "danger",
                    ),
                    "",
                ),
            },
        ]);
    }
    let mut letter_table = Table::new(vec![
        Column::text("received_at"),
        Column::text("channel"),
        Column::text("reason"),
        Column::text("payload"),
    ]);
    for l in &letters {
        let payload: String = l.payload.chars().take(160).collect();
        letter_table.push(vec![
            Cell::Text(l.received_at.to_rfc3339()),
            Cell::Text(l.channel.clone()),
            Cell::Text(l.reason.clone()),
            Cell::Text(payload),
        ]);
    }
    let body = html! {
        @if let Some(shown) = &shown {
            div.notice.ok.secret role="status" {
                p { "The new " (shown.what) " — copy it now, it is not shown again:" }
                p { code { (shown.secret) } }
            }
        }
        section {
            h2 id="tokens" { "Admin tokens" }
            p.muted { "A token opens the admin API and this dashboard. The last one cannot be revoked." }
            (token_table.html())
            form.filters method="post" action="/ui/settings/tokens" aria-labelledby="tokens" {
                (csrf_field(&session.csrf))
                (filters::text("label", "Label of a new token", None))
                div.field { button type="submit" { "Create token" } }
            }
        }
        section {
            h2 id="projects" { "Projects and DSN keys" }
            @for p in &projects {
                h3 { (p.name) " (project " (p.id) ")" }
                @for k in &p.keys {
                    form.filters method="post" action=(format!("/ui/settings/keys/{}", k.public_key)) {
                        (csrf_field(&session.csrf))
                        div.field { span.muted { "Key " } code { (k.public_key) } }
                        (filters::select("enabled", "State", &[("true", "Enabled"), ("false", "Disabled")],
                            Some(if k.enabled { "true" } else { "false" })))
                        (filters::number("rate_limit_per_minute", "Events per minute (0: the default)",
                            Some(&k.rate_limit_per_minute.unwrap_or(0).to_string()), Some("0"), Some("1")))
                        div.field { button.secondary type="submit" { "Save" } }
                    }
                }
            }
            form.filters method="post" action="/ui/settings/projects" aria-labelledby="projects" {
                (csrf_field(&session.csrf))
                (filters::text("name", "Name of a new project", None))
                div.field { button type="submit" { "Create project" } }
            }
        }
        section {
            h2 id="apikeys" { "Mobile API keys" }
            (key_table.html())
            form.filters method="post" action="/ui/settings/apikeys" aria-labelledby="apikeys" {
                (csrf_field(&session.csrf))
                (filters::text("name", "Name of a new key", None))
                div.field { button type="submit" { "Create API key" } }
            }
        }
        section {
            h2 { "Latest dead letters" }
            p.muted { "Rejected items, whitelisted and scrubbed, newest first." }
            (letter_table.html())
        }
    };
    Ok(page(session, "Settings", Nav::Settings, body))
}

/// `GET /ui/settings`.
pub async fn show(
    State(s): State<AppState>,
    Extension(session): Extension<Session>,
) -> Result<Response, UiError> {
    settings_page(&s, &session, None).await
}

fn back() -> Response {
    Redirect::to("/ui/settings").into_response()
}

#[derive(Debug, Deserialize)]
pub struct NamedForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    name: String,
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /ui/settings/tokens`: a new admin token, shown on the answer only.
pub async fn token_create(
    State(s): State<AppState>,
    Extension(session): Extension<Session>,
    Form(f): Form<NamedForm>,
) -> Result<Response, UiError> {
    session.check_csrf(&f.csrf)?;
    let label = f.label.trim();
    if label.is_empty() || label.chars().count() > 100 || label.chars().any(char::is_control) {
        return Err(UiError(
            beacon_wire::FieldError::new("label", "must be 1 to 100 printable characters").into(),
        ));
    }
    let token = crate::keys::generate_token();
    s.store
        .add_admin_token(&crate::keys::hash(&token), label, s.clock.now())
        .await?;
    tracing::info!(label = %label, by = %session.label, "admin token created from the dashboard");
    let what = format!("admin token “{label}”");
    settings_page(
        &s,
        &session,
        Some(Shown {
            what: &what,
            secret: &token,
        }),
    )
    .await
}

/// `POST /ui/settings/tokens/{id}/revoke`.
pub async fn token_revoke(
    State(s): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, UiError> {
    session.check_csrf(&f.csrf)?;
    if !s.store.revoke_admin_token(&id).await? {
        return Err(UiError(crate::ApiError::NotFound(format!(
            "admin token {id} not found"
        ))));
    }
    tracing::info!(token = %id, by = %session.label, "admin token revoked from the dashboard");
    Ok(back())
}

/// `POST /ui/settings/apikeys`: a new mobile API key, shown on the answer only.
pub async fn apikey_create(
    State(s): State<AppState>,
    Extension(session): Extension<Session>,
    Form(f): Form<NamedForm>,
) -> Result<Response, UiError> {
    session.check_csrf(&f.csrf)?;
    let created = new_api_key(&s, &f.name).await?;
    let what = format!("mobile API key “{}”", created.info.name);
    settings_page(
        &s,
        &session,
        Some(Shown {
            what: &what,
            secret: &created.key,
        }),
    )
    .await
}

/// `POST /ui/settings/apikeys/{name}/revoke`.
pub async fn apikey_revoke(
    State(s): State<AppState>,
    Extension(session): Extension<Session>,
    Path(name): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, UiError> {
    session.check_csrf(&f.csrf)?;
    let info = s.store.revoke_api_key(&name, s.clock.now()).await?;
    s.api_keys.clear();
    tracing::info!(name = %info.name, by = %session.label, "mobile api key revoked from the dashboard");
    Ok(back())
}

/// `POST /ui/settings/projects`.
pub async fn project_create(
    State(s): State<AppState>,
    Extension(session): Extension<Session>,
    Form(f): Form<NamedForm>,
) -> Result<Response, UiError> {
    session.check_csrf(&f.csrf)?;
    new_project(&s, &f.name).await?;
    Ok(back())
}

#[derive(Debug, Deserialize)]
pub struct KeyForm {
    #[serde(default)]
    csrf: String,
    enabled: Option<String>,
    rate_limit_per_minute: Option<String>,
}

/// `POST /ui/settings/keys/{key}`: enable, disable, rate limit.
pub async fn key_update(
    State(s): State<AppState>,
    Extension(session): Extension<Session>,
    Path(key): Path<String>,
    Form(f): Form<KeyForm>,
) -> Result<Response, UiError> {
    session.check_csrf(&f.csrf)?;
    let enabled = match f.enabled.as_deref() {
        None | Some("") => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => {
            return Err(UiError(
                beacon_wire::FieldError::new(
                    "enabled",
                    format!("must be true or false, got {other:?}"),
                )
                .into(),
            ));
        }
    };
    let rate = crate::admin::number::<u32>("rate_limit_per_minute", &f.rate_limit_per_minute)?;
    change_key(
        &s,
        &key,
        KeyUpdate {
            enabled,
            rate_limit_per_minute: rate,
        },
    )
    .await?;
    Ok(back())
}
