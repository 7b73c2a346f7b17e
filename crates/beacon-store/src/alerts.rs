//! Alerts: what a rule finds, judged as pure functions over the same report functions the admin API
//! answers with (so thresholds and k-anonymity hold), and the rules of episodes and retries.
//!
//! A rule's evaluation gives the **findings** true now, each under an episode key (an issue id,
//! `trace@version`, a bulletin id, `fleet`). [`Store::record_alert_findings`] turns them into
//! episodes: a key that starts firing opens episode `n + 1` and enqueues one notification (a row
//! unique per rule, key and episode, so two collectors cannot enqueue it twice); a firing key that
//! is no longer found is resolved and may fire again later. An evaluation that cannot judge (too
//! early in the day for a pro-rata count) returns `None` and changes nothing.
//!
//! Notifications are delivered at least once: a sender leases due rows
//! ([`Store::claim_alert_notifications`]), posts them and records the outcome; a failure is retried
//! after [`retry_delay`] (1, 5, then 30 minutes) and recorded as failed after [`MAX_ATTEMPTS`].

use crate::mobile::{self, RegressionQuery};
use crate::security;
use crate::{Result, Store, StoreError};
use beacon_wire::admin::{IssueFilter, IssueSort};
use beacon_wire::alert::{AlertKind, AlertParams, AlertRule, DestinationKind};
use beacon_wire::mobile::TraceName;
use chrono::{DateTime, Days, Duration, Utc};
use serde_json::json;

/// Attempts before a notification is recorded as failed.
pub const MAX_ATTEMPTS: u32 = 4;

/// How long after a failed attempt (the `attempts`-th) the next one is due; `None` after the last.
pub fn retry_delay(attempts: u32) -> Option<Duration> {
    match attempts {
        0 | 1 => Some(Duration::minutes(1)),
        2 => Some(Duration::minutes(5)),
        3 => Some(Duration::minutes(30)),
        _ => None,
    }
}

/// Days notifications (delivered, failed, cancelled) and resolved episode state are kept.
pub const HISTORY_DAYS: i64 = 90;

/// Issues a `new_issue` or `issue_spike` rule looks at per evaluation (the most recently seen).
pub const MAX_ISSUES: u32 = 1000;
/// A `new_issue` rule looks this far back (and never before the rule was made), so a collector that
/// was down for a while still announces what arrived meanwhile.
pub const NEW_ISSUE_LOOKBACK_HOURS: i64 = 24;
/// A `fleet_drop` rule judges a day only once this many seconds of it have passed (before that a
/// pro-rata count says little).
pub const FLEET_DROP_MIN_ELAPSED_SECS: i64 = 3600;
/// Days of the average a `fleet_drop` rule compares today with, and an `issue_spike` rule's hourly
/// average spans.
pub const AVERAGE_DAYS: u64 = 7;
/// Days of the range a `perf_regression` rule compares versions over (the default of
/// `beacon perf regressions`).
pub const REGRESSION_DAYS: u64 = 30;

/// A rule as stored: the destination URL whole and the webhook secret (neither is ever shown).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAlertRule {
    pub id: i64,
    pub name: String,
    pub kind: AlertKind,
    pub destination: DestinationKind,
    pub url: String,
    /// Hex; the HMAC key of a `webhook` destination.
    pub secret: Option<String>,
    /// Resolved: every parameter of the kind filled in.
    pub params: AlertParams,
    pub created_at: DateTime<Utc>,
}

impl StoredAlertRule {
    /// As listed: the URL masked, the secret left out.
    pub fn listed(&self, firing: u64) -> AlertRule {
        AlertRule {
            id: self.id,
            name: self.name.clone(),
            kind: self.kind,
            destination: self.destination,
            url: beacon_wire::alert::mask_url(&self.url),
            params: self.params.clone(),
            created_at: self.created_at,
            firing,
        }
    }
}

/// A rule to store ([`Store::create_alert_rule`]).
#[derive(Debug, Clone, PartialEq)]
pub struct NewAlertRuleRow {
    pub name: String,
    pub kind: AlertKind,
    pub destination: DestinationKind,
    pub url: String,
    pub secret: Option<String>,
    pub params: AlertParams,
    pub created_at: DateTime<Utc>,
}

/// The state of one episode key of a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertState {
    pub episode_key: String,
    /// The latest episode opened for the key (1, 2, …).
    pub episode: i64,
    pub firing: bool,
    /// When the latest episode opened, or resolved when not firing.
    pub since: DateTime<Utc>,
}

/// Something a rule finds true now.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The episode key within the rule.
    pub key: String,
    /// One sentence, from counts and text the store already holds scrubbed.
    pub text: String,
    /// The dashboard page that shows more (a path under the collector), if any.
    pub ui_path: Option<String>,
    /// The CLI command that shows more.
    pub cli: String,
    /// The figures judged, for a webhook's `details`.
    pub details: serde_json::Value,
}

/// A notification enqueued, leased by a sender ([`Store::claim_alert_notifications`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ClaimedNotification {
    pub id: i64,
    pub rule: StoredAlertRule,
    pub episode_key: String,
    pub episode: i64,
    pub created_at: DateTime<Utc>,
    pub text: String,
    pub ui_path: Option<String>,
    pub cli: String,
    pub details: serde_json::Value,
    /// Attempts made, this one included.
    pub attempts: u32,
}

/// How one attempt ended ([`Store::finish_alert_notification`]).
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptOutcome {
    Delivered,
    /// Failed; tried again at `next_at`.
    Retry {
        error: String,
        next_at: DateTime<Utc>,
    },
    /// Failed, and no attempt is left.
    Failed {
        error: String,
    },
}

/// What an attempt that failed leads to: a retry after [`retry_delay`], or failure.
pub fn after_failure(attempts: u32, error: String, now: DateTime<Utc>) -> AttemptOutcome {
    match retry_delay(attempts).filter(|_| attempts < MAX_ATTEMPTS) {
        Some(d) => AttemptOutcome::Retry {
            error,
            next_at: now + d,
        },
        None => AttemptOutcome::Failed { error },
    }
}

/// What evaluation needs besides the rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvalContext {
    pub now: DateTime<Utc>,
    /// `[reports] min_group_size`.
    pub min_group_size: u64,
    /// `[reports] exposure_window_days`.
    pub exposure_window_days: u32,
    /// `[reports] gone_after_days`.
    pub gone_after_days: u32,
}

/// The findings of `rule` now; `None` when the rule cannot judge this time (its state stays).
pub async fn evaluate(
    store: &dyn Store,
    rule: &StoredAlertRule,
    ctx: &EvalContext,
) -> Result<Option<Vec<Finding>>> {
    let p = &rule.params;
    match rule.kind {
        AlertKind::NewIssue => new_issues(store, rule, ctx).await.map(Some),
        AlertKind::IssueSpike => issue_spikes(store, p, ctx).await.map(Some),
        AlertKind::PerfRegression => regressions(store, p, ctx).await.map(Some),
        AlertKind::Exposure => exposure(store, p, ctx).await.map(Some),
        AlertKind::FleetDrop => fleet_drop(store, p, ctx).await,
    }
}

fn issue_filter(p: &AlertParams) -> IssueFilter {
    IssueFilter {
        project_id: p.project_id,
        environment: p.environment.clone(),
        sort: IssueSort::LastSeen,
        limit: MAX_ISSUES,
        ..Default::default()
    }
}

async fn new_issues(
    store: &dyn Store,
    rule: &StoredAlertRule,
    ctx: &EvalContext,
) -> Result<Vec<Finding>> {
    let p = &rule.params;
    let since = (ctx.now - Duration::hours(NEW_ISSUE_LOOKBACK_HOURS)).max(rule.created_at);
    let issues = store.issues(&issue_filter(p)).await?;
    Ok(issues
        .into_iter()
        .filter(|i| i.first_seen >= since && i.first_seen <= ctx.now)
        .filter(|i| p.min_level.is_none_or(|l| i.level >= l))
        .map(|i| Finding {
            key: i.id.to_string(),
            text: format!(
                "new issue #{} in project {} ({}): {}",
                i.id,
                i.project_id,
                i.level.as_str(),
                i.title
            ),
            ui_path: Some(format!("/ui/issues/{}", i.id)),
            cli: format!("beacon issues show {}", i.id),
            details: json!({
                "issue_id": i.id,
                "project_id": i.project_id,
                "level": i.level,
                "title": i.title,
                "culprit": i.culprit,
                "first_seen": i.first_seen,
                "count": i.count,
            }),
        })
        .collect())
}

async fn issue_spikes(
    store: &dyn Store,
    p: &AlertParams,
    ctx: &EvalContext,
) -> Result<Vec<Finding>> {
    let (factor, min_count) = (p.factor.unwrap_or(10.0), p.min_count.unwrap_or(10));
    let hour_ago = ctx.now - Duration::hours(1);
    let week_start = hour_ago - Duration::days(AVERAGE_DAYS as i64);
    let candidates: Vec<_> = store
        .issues(&issue_filter(p))
        .await?
        .into_iter()
        .filter(|i| i.last_seen >= hour_ago && i.count >= min_count)
        .collect();
    if candidates.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<i64> = candidates.iter().map(|i| i.id).collect();
    // Half-open ranges: the last hour includes events received at `now`.
    let recent = store
        .issue_event_counts(&ids, hour_ago, ctx.now + Duration::milliseconds(1))
        .await?;
    let before = store.issue_event_counts(&ids, week_start, hour_ago).await?;
    let count = |v: &[(i64, u64)], id: i64| v.iter().find(|(i, _)| *i == id).map_or(0, |c| c.1);
    let hours = (AVERAGE_DAYS * 24) as f64;
    Ok(candidates
        .into_iter()
        .filter_map(|i| {
            let last_hour = count(&recent, i.id);
            let average = count(&before, i.id) as f64 / hours;
            (last_hour >= min_count && last_hour as f64 > factor * average).then(|| Finding {
                key: i.id.to_string(),
                text: format!(
                    "issue #{} is spiking: {last_hour} events in the last hour, {} its hourly average \
                     of the previous 7 days ({average:.1}): {}",
                    i.id,
                    if average > 0.0 {
                        format!("{:.0}×", last_hour as f64 / average)
                    } else {
                        "far above".to_string()
                    },
                    i.title
                ),
                ui_path: Some(format!("/ui/issues/{}", i.id)),
                cli: format!("beacon issues show {}", i.id),
                details: json!({
                    "issue_id": i.id,
                    "project_id": i.project_id,
                    "title": i.title,
                    "last_hour": last_hour,
                    "hourly_average": average,
                    "factor": factor,
                    "min_count": min_count,
                }),
            })
        })
        .collect())
}

async fn regressions(
    store: &dyn Store,
    p: &AlertParams,
    ctx: &EvalContext,
) -> Result<Vec<Finding>> {
    let today = ctx.now.date_naive();
    let from = today
        .checked_sub_days(Days::new(REGRESSION_DAYS - 1))
        .unwrap_or(today);
    let trace = match p.trace.as_deref() {
        Some(t) => Some(
            TraceName::parse(t)
                .ok_or_else(|| StoreError::InvalidInput(format!("unknown trace name {t:?}")))?,
        ),
        None => None,
    };
    let (threshold, min_samples) = (p.threshold.unwrap_or(0.1), p.min_samples.unwrap_or(100));
    let report = mobile::regressions(
        store,
        &RegressionQuery {
            trace,
            from,
            to: today,
            threshold,
            min_samples,
            include_emulators: false,
            min_group_size: ctx.min_group_size,
        },
    )
    .await?;
    let mut cli =
        format!("beacon perf regressions --threshold {threshold} --min-samples {min_samples}");
    if let Some(t) = &p.trace {
        cli.push_str(&format!(" --trace {t}"));
    }
    Ok(report
        .comparisons
        .into_iter()
        .filter(|c| c.flagged)
        .map(|c| Finding {
            key: format!("{}@{}", c.trace, c.version),
            text: format!(
                "{}: app {} is slower than {}: p75 {:.0} ms ({:+.0} %), p95 {:.0} ms ({:+.0} %), {} samples",
                c.trace,
                c.version,
                c.previous_version,
                c.p75_ms,
                c.p75_change * 100.0,
                c.p95_ms,
                c.p95_change * 100.0,
                c.samples
            ),
            ui_path: Some("/ui/regressions".into()),
            cli: cli.clone(),
            details: json!(c),
        })
        .collect())
}

async fn exposure(store: &dyn Store, p: &AlertParams, ctx: &EvalContext) -> Result<Vec<Finding>> {
    let today = ctx.now.date_naive();
    let report = match security::exposure(
        store,
        p.bulletin.as_deref(),
        ctx.exposure_window_days,
        today,
        false,
        ctx.min_group_size,
    )
    .await
    {
        Ok(r) => r,
        // The rule's bulletin is not published (yet): nothing to judge.
        Err(StoreError::NotFound(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let checked = report.servers_in_window;
    // Too few servers checked in to say anything about a share of them (k-anonymity).
    if checked < ctx.min_group_size.max(1) {
        return Ok(Vec::new());
    }
    let after = Days::new(p.after_days.unwrap_or(7).into());
    let percent = p.percent.unwrap_or(10.0);
    Ok(report
        .bulletins
        .into_iter()
        .filter(|b| b.retracted_at.is_none())
        .filter(|b| {
            b.published_at
                .checked_add_days(after)
                .is_some_and(|due| due <= ctx.now)
        })
        .filter_map(|b| {
            let share = b.servers as f64 * 100.0 / checked as f64;
            (share >= percent).then(|| {
                let days = (ctx.now - b.published_at).num_days();
                Finding {
                    key: b.id.clone(),
                    text: format!(
                        "bulletin {} ({}) “{}”: {share:.0} % of the servers that checked in \
                         ({} of {checked}) are still on affected versions ({}), {days} days after \
                         publication",
                        b.id,
                        serde_json::to_value(b.severity)
                            .ok()
                            .and_then(|v| v.as_str().map(String::from))
                            .unwrap_or_default(),
                        b.title,
                        b.servers,
                        b.affected
                    ),
                    ui_path: Some(format!("/ui/bulletins/{}", b.id)),
                    cli: format!("beacon report exposure --bulletin {}", b.id),
                    details: json!({
                        "bulletin": b.id,
                        "published_at": b.published_at,
                        "affected": b.affected,
                        "affected_servers": b.servers,
                        "servers_checked": checked,
                        "percent": share,
                        "window_days": report.window_days,
                    }),
                }
            })
        })
        .collect())
}

async fn fleet_drop(
    store: &dyn Store,
    p: &AlertParams,
    ctx: &EvalContext,
) -> Result<Option<Vec<Finding>>> {
    let today = ctx.now.date_naive();
    let midnight = crate::retention::midnight(today);
    let elapsed = (ctx.now - midnight).num_seconds();
    if elapsed < FLEET_DROP_MIN_ELAPSED_SECS {
        return Ok(None);
    }
    let first = today
        .checked_sub_days(Days::new(AVERAGE_DAYS))
        .unwrap_or(today);
    let growth = security::growth(store, first, today, false, ctx.gone_after_days, today).await?;
    let (past, now): (Vec<_>, Vec<_>) = growth.days.iter().partition(|d| d.day < today);
    let average = past.iter().map(|d| d.servers).sum::<u64>() as f64 / AVERAGE_DAYS as f64;
    // A fleet this small says nothing about a drop (and a share of it would single servers out).
    if average < ctx.min_group_size.max(1) as f64 {
        return Ok(Some(Vec::new()));
    }
    let so_far = now.first().map_or(0, |d| d.servers);
    let fraction = elapsed as f64 / 86_400.0;
    let projected = so_far as f64 / fraction;
    let percent = p.percent.unwrap_or(50.0);
    let share = projected * 100.0 / average;
    if share >= percent {
        return Ok(Some(Vec::new()));
    }
    Ok(Some(vec![Finding {
        key: "fleet".into(),
        text: format!(
            "only {so_far} servers checked in today by {} UTC: {projected:.0} projected for the day, \
             {share:.0} % of the 7-day average ({average:.0}); a broken release or check endpoint?",
            ctx.now.format("%H:%M")
        ),
        ui_path: Some("/ui/growth".into()),
        cli: "beacon report growth".into(),
        details: json!({
            "servers_today": so_far,
            "projected": projected,
            "average": average,
            "percent": share,
            "threshold_percent": percent,
        }),
    }]))
}

/// The finding of a sample notification (`beacon alert test`).
pub fn sample(rule: &StoredAlertRule) -> Finding {
    Finding {
        key: "test".into(),
        text: format!(
            "test notification of rule “{}” ({}): this destination receives its alerts",
            rule.name, rule.kind
        ),
        ui_path: Some("/ui/settings".into()),
        cli: "beacon alert list".into(),
        details: json!({ "test": true }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_then_fail() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let next = |n| match after_failure(n, "x".into(), now) {
            AttemptOutcome::Retry { next_at, .. } => Some((next_at - now).num_minutes()),
            _ => None,
        };
        assert_eq!(
            (1..=MAX_ATTEMPTS).map(next).collect::<Vec<_>>(),
            vec![Some(1), Some(5), Some(30), None]
        );
    }
}
