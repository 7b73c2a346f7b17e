//! `/ui/settings`: admin tokens (a new one shown once; revoke), projects with their DSN keys (create;
//! enable, disable, rate limit), mobile API keys (a new one shown once; revoke), alert rules (add,
//! with a webhook's signing secret shown once; send a test; remove) and their latest notifications,
//! the latest dead letters. Every change is a POST with the session's CSRF token, through the same functions as the
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

/// Notifications listed on the page.
const NOTIFICATIONS: u32 = 10;

async fn settings_page(
    s: &AppState,
    session: &Session,
    shown: Option<Shown<'_>>,
) -> Result<Response, UiError> {
    let tokens = s.store.admin_tokens().await?;
    let projects = s.store.projects().await?;
    let api_keys = s.store.api_keys().await?;
    let letters = s.store.dead_letters(None, DEAD_LETTERS).await?;
    let alert_rules = crate::alerts::rule_list(s).await?;
    let notifications = s.store.alert_history(None, NOTIFICATIONS).await?;
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
    let mut alert_table = Table::new(vec![
        Column::text("id"),
        Column::text("name"),
        Column::text("kind"),
        Column::text("parameters"),
        Column::text("destination"),
        Column::text("firing"),
        Column::text(""),
    ]);
    for r in &alert_rules {
        let params = serde_json::to_value(&r.params)
            .ok()
            .and_then(|v| v.as_object().cloned())
            .map(|o| {
                o.iter()
                    .map(|(k, v)| format!("{k}={}", v.to_string().trim_matches('"')))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default();
        alert_table.push(vec![
            Cell::Text(r.id.to_string()),
            Cell::Text(r.name.clone()),
            Cell::Text(r.kind.to_string()),
            Cell::Text(params),
            Cell::Text(format!("{} {}", r.destination, r.url)),
            Cell::Text(r.firing.to_string()),
            Cell::markup(
                html! {
                    (post(format!("/ui/settings/alerts/{}/test", r.id), "Send test", "secondary"))
                    " "
                    (post(format!("/ui/settings/alerts/{}/remove", r.id), "Remove", "danger"))
                },
                "",
            ),
        ]);
    }
    let mut notification_table = Table::new(vec![
        Column::text("created_at"),
        Column::text("rule"),
        Column::text("episode"),
        Column::text("status"),
        Column::text("attempts"),
        Column::text("last_error"),
        Column::text("message"),
    ]);
    for d in &notifications {
        notification_table.push(vec![
            Cell::Text(d.created_at.to_rfc3339()),
            Cell::Text(d.rule_name.clone()),
            Cell::Text(format!("{} #{}", d.episode_key, d.episode)),
            Cell::Text(d.status.as_str().to_string()),
            Cell::Text(d.attempts.to_string()),
            d.last_error.clone().map(Cell::Text).unwrap_or(Cell::Empty),
            Cell::Text(d.text.chars().take(160).collect()),
        ]);
    }
    let kinds: Vec<(&str, &str)> = beacon_wire::alert::AlertKind::ALL
        .iter()
        .map(|k| (k.as_str(), k.as_str()))
        .collect();
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
            h2 id="alerts" { "Alerts" }
            p.muted {
                "Rules are evaluated every minute; each episode (an issue, a regression, a bulletin, \
                 the fleet) notifies once. Webhook URLs are secrets: only their host is shown. \
                 Parameters left empty take their defaults; see the README's Alerts section."
            }
            (alert_table.html())
            form.filters method="post" action="/ui/settings/alerts" aria-labelledby="alerts" {
                (csrf_field(&session.csrf))
                (filters::text("name", "Name of a new rule", None))
                (filters::select("kind", "Kind", &kinds, None))
                (filters::select("destination", "Destination", &[
                    ("mattermost", "Mattermost"), ("slack", "Slack"), ("webhook", "Signed JSON webhook"),
                ], None))
                (filters::text("url", "Webhook URL", None))
                (filters::number("project_id", "Project id (issues)", None, Some("1"), Some("1")))
                (filters::select("min_level", "Lowest level (new issues)", &[
                    ("", "any"), ("debug", "debug"), ("info", "info"), ("warning", "warning"),
                    ("error", "error"), ("fatal", "fatal"),
                ], None))
                (filters::text("environment", "Environment (new issues)", None))
                (filters::text("factor", "Times the hourly average (spikes)", None))
                (filters::number("min_count", "Fewest events in the hour (spikes)", None, Some("1"), Some("1")))
                (filters::text("trace", "Trace (regressions)", None))
                (filters::text("threshold", "Slower by, e.g. 10% (regressions)", None))
                (filters::number("min_samples", "Fewest samples (regressions)", None, Some("1"), Some("1")))
                (filters::text("bulletin", "Bulletin id (exposure)", None))
                (filters::number("after_days", "Days after publication (exposure)", None, Some("0"), Some("1")))
                (filters::text("percent", "Percent (exposure: at least; fleet drop: below)", None))
                div.field { button type="submit" { "Add alert rule" } }
            }
            div id="alert-notifications" {
                h3 { "Latest notifications" }
                (notification_table.html())
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

#[derive(Debug, Default, Deserialize)]
pub struct AlertForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    destination: String,
    #[serde(default)]
    url: String,
    project_id: Option<String>,
    min_level: Option<String>,
    environment: Option<String>,
    factor: Option<String>,
    min_count: Option<String>,
    trace: Option<String>,
    threshold: Option<String>,
    min_samples: Option<String>,
    bulletin: Option<String>,
    after_days: Option<String>,
    percent: Option<String>,
}

impl AlertForm {
    /// The rule the form describes; empty fields are left to their defaults.
    fn rule(&self) -> Result<beacon_wire::alert::NewAlertRule, beacon_wire::FieldError> {
        use beacon_wire::FieldError;
        use beacon_wire::alert::{AlertKind, AlertParams, DestinationKind, NewAlertRule};
        let given = |v: &Option<String>| {
            v.clone()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        fn num<T: std::str::FromStr>(
            field: &str,
            v: Option<String>,
        ) -> Result<Option<T>, FieldError> {
            v.map(|s| {
                s.parse().map_err(|_| {
                    FieldError::new(
                        format!("params.{field}"),
                        format!("must be a number, got {s:?}"),
                    )
                })
            })
            .transpose()
        }
        let kind = AlertKind::parse(&self.kind).ok_or_else(|| {
            FieldError::new("kind", format!("{:?} is not a kind of alert", self.kind))
        })?;
        let destination = DestinationKind::parse(&self.destination).ok_or_else(|| {
            FieldError::new("destination", "must be mattermost, slack or webhook")
        })?;
        let min_level = match given(&self.min_level) {
            None => None,
            Some(l) => Some(
                serde_json::from_value(serde_json::Value::String(l.clone())).map_err(|_| {
                    FieldError::new("params.min_level", format!("{l:?} is not a level"))
                })?,
            ),
        };
        let threshold = match given(&self.threshold) {
            None => None,
            Some(t) => Some(match t.strip_suffix('%') {
                Some(p) => num::<f64>("threshold", Some(p.trim().to_string()))?.map(|v| v / 100.0),
                None => num::<f64>("threshold", Some(t))?,
            })
            .flatten(),
        };
        Ok(NewAlertRule {
            name: self.name.clone(),
            kind,
            destination,
            url: self.url.clone(),
            params: AlertParams {
                project_id: num("project_id", given(&self.project_id))?,
                min_level,
                environment: given(&self.environment),
                factor: num("factor", given(&self.factor))?,
                min_count: num("min_count", given(&self.min_count))?,
                trace: given(&self.trace),
                threshold,
                min_samples: num("min_samples", given(&self.min_samples))?,
                bulletin: given(&self.bulletin),
                after_days: num("after_days", given(&self.after_days))?,
                percent: num(
                    "percent",
                    given(&self.percent).map(|p| p.trim_end_matches('%').trim().to_string()),
                )?,
            },
        })
    }
}

/// `POST /ui/settings/alerts`: a new rule; a webhook's signing secret is shown on the answer only.
pub async fn alert_create(
    State(s): State<AppState>,
    Extension(session): Extension<Session>,
    Form(f): Form<AlertForm>,
) -> Result<Response, UiError> {
    session.check_csrf(&f.csrf)?;
    let created = crate::alerts::new_rule(&s, f.rule()?).await?;
    tracing::info!(id = created.rule.id, by = %session.label, "alert rule created from the dashboard");
    match &created.secret {
        Some(secret) => {
            let what = format!("signing secret of alert rule “{}”", created.rule.name);
            settings_page(
                &s,
                &session,
                Some(Shown {
                    what: &what,
                    secret,
                }),
            )
            .await
        }
        None => Ok(back()),
    }
}

/// `POST /ui/settings/alerts/{id}/remove`.
pub async fn alert_remove(
    State(s): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, UiError> {
    session.check_csrf(&f.csrf)?;
    let rule = crate::alerts::remove_rule(&s, &id).await?;
    tracing::info!(id = rule.id, by = %session.label, "alert rule removed from the dashboard");
    Ok(back())
}

/// `POST /ui/settings/alerts/{id}/test`: sends the rule's sample; the outcome is in the list of
/// notifications.
pub async fn alert_test(
    State(s): State<AppState>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
    Form(f): Form<CsrfForm>,
) -> Result<Response, UiError> {
    session.check_csrf(&f.csrf)?;
    crate::alerts::send_test(&s, &id).await?;
    Ok(Redirect::to("/ui/settings#alerts").into_response())
}
