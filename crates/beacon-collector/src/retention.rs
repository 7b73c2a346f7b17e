//! Data retention: the background job that applies `[retention]`, and its admin routes
//! (`GET /admin/v1/retention`, `POST /admin/v1/retention/apply`). What expires and how each backend
//! removes it is `beacon_store::retention` and the backends' `retention.rs`.

use crate::error::ApiError;
use crate::{AppState, Clock};
use axum::Json;
use axum::extract::{Query, State};
use beacon_store::retention::{RetentionPolicy, RetentionRun, RetentionStatus};
use beacon_store::{Store, StoreError};
use chrono::NaiveDate;
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;

/// Rows removed by retention, by channel (`issues` for issues removed with their last event).
pub const RETENTION_REMOVED_TOTAL: &str = "beacon_retention_removed_total";

/// Looks at the clock every `every` (the first time `every` after start, so that a start is never
/// slowed by a purge) and applies `policy` once per UTC day: at the first look, then at the first
/// look of each new day. A run another collector holds (PostgreSQL) or a failed one is tried again
/// at the next look.
pub async fn job(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    policy: RetentionPolicy,
    every: Duration,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut done: Option<NaiveDate> = None;
    loop {
        tick.tick().await;
        let today = clock.now().date_naive();
        if done == Some(today) {
            continue;
        }
        match apply(&*store, &policy, today, false).await {
            Ok(_) => done = Some(today),
            Err(StoreError::Conflict(m)) => {
                tracing::debug!(%m, "retention left to another collector")
            }
            Err(e) => tracing::warn!(error = %e, "retention failed; retrying on schedule"),
        }
    }
}

/// One run: the store's, logged and counted.
async fn apply(
    store: &dyn Store,
    policy: &RetentionPolicy,
    today: NaiveDate,
    dry_run: bool,
) -> Result<RetentionRun, StoreError> {
    let started = std::time::Instant::now();
    let run = store.apply_retention(policy, today, dry_run).await?;
    if !dry_run {
        for c in &run.channels {
            metrics::counter!(RETENTION_REMOVED_TOTAL, "channel" => c.channel.as_str())
                .increment(c.removed);
        }
        metrics::counter!(RETENTION_REMOVED_TOTAL, "channel" => "issues")
            .increment(run.issues_removed);
    }
    let removed: u64 = run.channels.iter().map(|c| c.removed).sum();
    tracing::info!(
        %today,
        dry_run,
        removed,
        issues = run.issues_removed,
        secs = started.elapsed().as_secs_f64(),
        "retention applied"
    );
    Ok(run)
}

/// `GET /admin/v1/retention`: per channel, its retention and what it holds.
pub async fn status(State(s): State<AppState>) -> Result<Json<Vec<RetentionStatus>>, ApiError> {
    let policy = s.config.retention.policy();
    let mut channels = s.store.retention_status().await?;
    for c in &mut channels {
        c.retention_days = policy.days(c.channel);
    }
    Ok(Json(channels))
}

#[derive(Debug, Default, Deserialize)]
pub struct ApplyParams {
    dry_run: Option<String>,
}

/// `POST /admin/v1/retention/apply[?dry_run=true]`: one run now, on the collector's clock; `409`
/// while another collector runs one.
pub async fn apply_now(
    State(s): State<AppState>,
    Query(p): Query<ApplyParams>,
) -> Result<Json<RetentionRun>, ApiError> {
    let dry_run = crate::admin::flag("dry_run", &p.dry_run)?;
    let today = s.clock.now().date_naive();
    let run = apply(&*s.store, &s.config.retention.policy(), today, dry_run).await?;
    Ok(Json(run))
}
