//! The security check: claim the day's check in the state, send the Mattermost query, fetch and
//! notify the bulletins not yet notified.

use crate::facts::HostFacts;
use crate::notify::Bulletin;
use crate::{BuildError, Inner, SendError, blocking};
use beacon_wire::security::{BulletinNotice, build_query};
use chrono::{DateTime, Utc};
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// A check is due this long after the last one.
pub const CHECK_INTERVAL: chrono::TimeDelta = chrono::TimeDelta::hours(24);

/// Largest `/security` answer read.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// What one call of the check did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum CheckOutcome {
    /// `security_alerts` is off: nothing was sent.
    Off,
    /// The last check was less than 24 hours ago: nothing was sent.
    NotDue { next_due: DateTime<Utc> },
    /// The check was sent and answered.
    Checked(CheckReport),
}

/// A check that was answered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckReport {
    /// The exact URL requested.
    pub url: String,
    /// Each bulletin of the answer and what became of it.
    pub bulletins: Vec<BulletinOutcome>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BulletinOutcome {
    pub id: String,
    pub result: BulletinResult,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", content = "detail", rename_all = "snake_case")]
pub enum BulletinResult {
    /// Handed to the notifier, which succeeded; marked as notified.
    Notified,
    /// Notified at an earlier check.
    AlreadyNotified,
    /// The notifier failed; offered again at the next check.
    NotifierFailed(String),
    /// `/bulletins/{id}` answered 404: retracted since (or unknown). Not notified.
    Gone,
    /// Fetching the body failed; offered again at the next check.
    FetchFailed(String),
    /// For another version than ours (Mattermost servers act only on their own `X.Y.Z`), or an id that
    /// is not a valid bulletin id.
    Ignored,
}

/// Why a check failed. When it failed after the check was claimed, the next one is 24 hours later.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error("no collector url is configured")]
    NoCollector,
    #[error("no facts provider was given")]
    NoFacts,
    #[error("the host's facts are not available: {0}")]
    Facts(String),
    #[error("the host's facts are not valid: {0}")]
    InvalidFacts(beacon_wire::FieldError),
    #[error(transparent)]
    State(#[from] crate::StateError),
    #[error("the check was not answered: {0}")]
    Send(#[from] SendError),
    #[error("the collector answered the check with {0}")]
    Status(u16),
    #[error("the collector's answer is not a bulletin list: {0}")]
    Answer(serde_json::Error),
    #[error("cannot reach the collector: {0}")]
    Build(#[from] BuildError),
    #[error("the {0} panicked")]
    Panicked(&'static str),
}

/// The URL of the check for these facts, diagnostic id and previous check time.
pub(crate) fn check_url(
    base: &str,
    facts: &HostFacts,
    id: &str,
    last: Option<DateTime<Utc>>,
) -> String {
    let check = facts.to_check(id, last.map(|t| t.timestamp_millis()));
    format!("{base}/security?{}", build_query(&check))
}

/// Whether a check is due at `now` after one at `last`. A last check more than an hour in the future
/// (a clock set back) does not hold the next one off.
pub(crate) fn is_due(last: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    match last {
        None => true,
        Some(t) => now - t >= CHECK_INTERVAL || t - now > chrono::TimeDelta::hours(1),
    }
}

pub(crate) async fn host_facts(inner: &Arc<Inner>) -> Result<HostFacts, CheckError> {
    let facts = inner.facts.clone().ok_or(CheckError::NoFacts)?;
    let facts = blocking(move || facts.facts())
        .await
        .map_err(|_| CheckError::Panicked("facts provider"))?
        .map_err(|e| CheckError::Facts(e.to_string()))?;
    facts.validate().map_err(CheckError::InvalidFacts)?;
    Ok(facts)
}

/// Runs the check when due (always when `force`).
pub(crate) async fn run(inner: &Arc<Inner>, force: bool) -> Result<CheckOutcome, CheckError> {
    if !inner.switches.security_alerts {
        return Ok(CheckOutcome::Off);
    }
    let base = inner.collector.clone().ok_or(CheckError::NoCollector)?;
    let transport = inner.transport.clone().ok_or(CheckError::NoCollector)?;
    let facts = host_facts(inner).await?;

    // Claim the check: record its time before the request, so a collector that fails or never answers
    // is asked again only at the next due time, by whichever node of the cluster gets there first.
    let now = inner.clock.now();
    let state = inner.state.clone();
    let mut claim = None;
    let after = blocking(move || {
        state
            .update(&mut |s| {
                let id = s.ensure_diagnostic_id().to_string();
                if force || is_due(s.last_check, now) {
                    claim = Some((id, s.last_check));
                    s.last_check = Some(now);
                }
            })
            .map(|s| (s, claim))
    })
    .await
    .map_err(|_| CheckError::Panicked("state"))??;
    let (state_now, claim) = after;
    let Some((id, previous)) = claim else {
        let last = state_now.last_check.unwrap_or(now);
        return Ok(CheckOutcome::NotDue {
            next_due: last + CHECK_INTERVAL,
        });
    };
    inner.stats.checks.fetch_add(1, Ordering::Relaxed);
    let result = send_check(inner, &transport, &base, &facts, &id, previous).await;
    if result.is_err() {
        inner.stats.check_failures.fetch_add(1, Ordering::Relaxed);
    }
    result.map(CheckOutcome::Checked)
}

async fn send_check(
    inner: &Arc<Inner>,
    transport: &Arc<crate::transport::Transport>,
    base: &str,
    facts: &HostFacts,
    id: &str,
    previous: Option<DateTime<Utc>>,
) -> Result<CheckReport, CheckError> {
    let url = check_url(base, facts, id, previous);
    transport.log_payload("security", "GET", &url, None).await;
    let response = transport
        .client
        .get(&url)
        .send()
        .await
        .map_err(SendError::http)?;
    if response.status() != reqwest::StatusCode::OK {
        return Err(CheckError::Status(response.status().as_u16()));
    }
    let body = crate::transport::read_limited(response, MAX_ANSWER_BYTES).await?;
    let notices: Vec<BulletinNotice> = serde_json::from_slice(&body).map_err(CheckError::Answer)?;
    tracing::info!(bulletins = notices.len(), "security check answered");

    let version = facts.version.to_string();
    let mut bulletins = Vec::with_capacity(notices.len());
    for notice in notices {
        let id = notice.id.clone();
        let result = if notice.applies_to_version != version || !is_bulletin_id(&notice.id) {
            BulletinResult::Ignored
        } else {
            offer(inner, transport, base, notice).await
        };
        bulletins.push(BulletinOutcome { id, result });
    }
    Ok(CheckReport { url, bulletins })
}

fn is_bulletin_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
}

/// Fetches a bulletin not yet notified, hands it to the notifier, marks it when that succeeded.
async fn offer(
    inner: &Arc<Inner>,
    transport: &Arc<crate::transport::Transport>,
    base: &str,
    notice: BulletinNotice,
) -> BulletinResult {
    let state = inner.state.clone();
    let known = blocking(move || state.load()).await;
    match known {
        Ok(Ok(s)) if s.notified.contains(&notice.id) => return BulletinResult::AlreadyNotified,
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return BulletinResult::FetchFailed(e.to_string()),
        Err(_) => return BulletinResult::FetchFailed("the state panicked".into()),
    }
    let url = format!("{base}/bulletins/{}", notice.id);
    transport.log_payload("security", "GET", &url, None).await;
    let body = match transport.client.get(&url).send().await {
        Ok(r) if r.status() == reqwest::StatusCode::NOT_FOUND => {
            tracing::info!(id = %notice.id, "bulletin is gone (retracted): not notified");
            return BulletinResult::Gone;
        }
        Ok(r) if r.status() == reqwest::StatusCode::OK => {
            match crate::transport::read_limited(r, beacon_wire::bulletin::MAX_BODY_BYTES).await {
                Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                Err(e) => return BulletinResult::FetchFailed(e.to_string()),
            }
        }
        Ok(r) => return BulletinResult::FetchFailed(format!("answered {}", r.status().as_u16())),
        Err(e) => return BulletinResult::FetchFailed(SendError::http(e).to_string()),
    };
    let bulletin = Bulletin {
        notice,
        body_html: body,
    };
    let id = bulletin.notice.id.clone();
    let notifier = inner.notifier.clone();
    let notified = blocking(move || notifier.notify(&bulletin)).await;
    match notified {
        Ok(Ok(())) => {
            let (state, marked) = (inner.state.clone(), id.clone());
            let saved = blocking(move || {
                state.update(&mut |s| {
                    s.notified.insert(marked.clone());
                })
            })
            .await;
            inner
                .stats
                .bulletins_notified
                .fetch_add(1, Ordering::Relaxed);
            match saved {
                Ok(Ok(_)) => BulletinResult::Notified,
                Ok(Err(e)) => {
                    tracing::error!(%id, "bulletin notified but not recorded: {e}");
                    BulletinResult::Notified
                }
                Err(_) => BulletinResult::Notified,
            }
        }
        Ok(Err(e)) => {
            inner.stats.notify_failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%id, "notifier failed, the bulletin is offered again at the next check: {e}");
            BulletinResult::NotifierFailed(e.to_string())
        }
        Err(_) => {
            inner.stats.notify_failures.fetch_add(1, Ordering::Relaxed);
            BulletinResult::NotifierFailed("the notifier panicked".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_after_24_hours_or_when_the_clock_went_back() {
        let t = Utc::now();
        assert!(is_due(None, t));
        assert!(!is_due(Some(t), t));
        assert!(!is_due(Some(t), t + chrono::TimeDelta::hours(20)));
        assert!(is_due(Some(t), t + chrono::TimeDelta::hours(24)));
        assert!(!is_due(Some(t + chrono::TimeDelta::minutes(30)), t));
        assert!(is_due(Some(t + chrono::TimeDelta::days(3)), t));
    }
}

/// Why a deletion request failed.
#[derive(Debug, thiserror::Error)]
pub enum ForgetError {
    #[error("no collector url is configured")]
    NoCollector,
    #[error(
        "this server has no diagnostic id: it never checked in, so the collector holds nothing of it"
    )]
    NoId,
    #[error(transparent)]
    State(#[from] crate::StateError),
    #[error("the deletion request was not answered: {0}")]
    Send(#[from] SendError),
    #[error("the collector answered the deletion request with {0}")]
    Status(u16),
    #[error("the collector's answer is not a deletion record: {0}")]
    Answer(serde_json::Error),
    #[error("the state panicked")]
    Panicked,
}

/// Asks the collector to forget this server (`POST /v1/forget` with the diagnostic id, which only
/// this server holds); the answer comes after the deletion committed. Sent whatever the switches say:
/// erasing data is always allowed. The id is kept, so a later check is the same server again.
pub(crate) async fn forget(
    inner: &Arc<Inner>,
) -> Result<beacon_wire::admin::ForgetRecord, ForgetError> {
    let base = inner.collector.clone().ok_or(ForgetError::NoCollector)?;
    let transport = inner.transport.clone().ok_or(ForgetError::NoCollector)?;
    let state = inner.state.clone();
    let id = blocking(move || state.load())
        .await
        .map_err(|_| ForgetError::Panicked)??
        .diagnostic_id
        .filter(|id| crate::state::is_diagnostic_id(id))
        .ok_or(ForgetError::NoId)?;
    let url = format!("{base}/v1/forget");
    let body = serde_json::to_string(&beacon_wire::admin::AgentForget { server_id: id })
        .map_err(ForgetError::Answer)?;
    transport
        .log_payload("forget", "POST", &url, Some(body.clone()))
        .await;
    let response = transport
        .client
        .post(&url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .map_err(SendError::http)?;
    if response.status() != reqwest::StatusCode::OK {
        return Err(ForgetError::Status(response.status().as_u16()));
    }
    let body = crate::transport::read_limited(response, MAX_ANSWER_BYTES).await?;
    serde_json::from_slice(&body).map_err(ForgetError::Answer)
}
