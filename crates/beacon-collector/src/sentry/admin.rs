//! Admin API of the Sentry channel: projects, their DSN keys, and issues.

use crate::AppState;
use crate::admin::number;
use crate::error::ApiError;
use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use beacon_wire::FieldError;
use beacon_wire::admin::{
    IssueDetail, IssueFilter, IssueSort, IssueSummary, KeyInfo, KeyUpdate, NewProject, ProjectInfo,
};
use serde::Deserialize;

pub const MAX_PROJECT_NAME: usize = 100;
/// Most issues one request lists.
pub const MAX_ISSUES: u32 = 1000;

pub async fn list_projects(State(s): State<AppState>) -> Result<Json<Vec<ProjectInfo>>, ApiError> {
    Ok(Json(s.store.projects().await?))
}

pub async fn create_project(
    State(s): State<AppState>,
    body: Result<Json<NewProject>, JsonRejection>,
) -> Result<(StatusCode, Json<ProjectInfo>), ApiError> {
    let Json(new) = body?;
    Ok((StatusCode::CREATED, Json(new_project(&s, &new.name).await?)))
}

/// Makes a project named `name` with its first DSN key (the admin API's and the dashboard's).
pub async fn new_project(s: &AppState, raw: &str) -> Result<ProjectInfo, ApiError> {
    let name = raw.trim();
    if name.is_empty()
        || raw.chars().count() > MAX_PROJECT_NAME
        || name.chars().any(char::is_control)
    {
        return Err(FieldError::new(
            "name",
            format!("must be 1 to {MAX_PROJECT_NAME} printable characters, not only white space"),
        )
        .into());
    }
    let key = hex::encode(rand::random::<[u8; 16]>());
    let project = s.store.create_project(name, &key, s.clock.now()).await?;
    tracing::info!(project = project.id, name = %project.name, "project created");
    Ok(project)
}

pub async fn update_key(
    State(s): State<AppState>,
    Path(key): Path<String>,
    body: Result<Json<KeyUpdate>, JsonRejection>,
) -> Result<Json<KeyInfo>, ApiError> {
    let Json(update) = body?;
    Ok(Json(change_key(&s, &key, update).await?))
}

/// Enables, disables or rate-limits a DSN key (the admin API's and the dashboard's).
pub async fn change_key(s: &AppState, key: &str, update: KeyUpdate) -> Result<KeyInfo, ApiError> {
    let info = s
        .store
        .update_key(key, update.enabled, update.rate_limit_per_minute)
        .await?;
    s.keys.forget(key);
    tracing::info!(key = %key, enabled = info.enabled, rate_limit = ?info.rate_limit_per_minute, "key updated");
    Ok(info)
}

/// The query parameters of the issue list, as the admin API and the dashboard take them.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct IssueParams {
    pub project: Option<String>,
    pub release: Option<String>,
    pub environment: Option<String>,
    pub level: Option<String>,
    pub sort: Option<String>,
    pub limit: Option<String>,
}

pub async fn list_issues(
    State(s): State<AppState>,
    Query(p): Query<IssueParams>,
) -> Result<Json<Vec<IssueSummary>>, ApiError> {
    Ok(Json(issue_list(&s, p).await?))
}

/// The issues for these parameters (the admin API's and the dashboard's).
pub async fn issue_list(s: &AppState, p: IssueParams) -> Result<Vec<IssueSummary>, ApiError> {
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
        project_id: number::<i64>("project", &p.project)?
            .map(|id| {
                (id >= 1).then_some(id).ok_or_else(|| {
                    FieldError::new(
                        "project",
                        format!("must be a project id (1 or more), got {id}"),
                    )
                })
            })
            .transpose()?,
        release: p.release,
        environment: p.environment,
        level,
        sort,
        limit,
    };
    Ok(s.store.issues(&filter).await?)
}

pub async fn show_issue(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<IssueDetail>, ApiError> {
    let id: i64 = crate::error::path_number("id", &id)?;
    s.store
        .issue(id)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("issue {id} not found")))
}
