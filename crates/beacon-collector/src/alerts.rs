//! Alerts: the background job that evaluates rules and delivers their notifications, the sender
//! (Mattermost/Slack `{"text": …}` or a signed JSON webhook), and the admin routes
//! (`/admin/v1/alerts…`). What a rule finds and the episode and retry rules are
//! `beacon_store::alerts`; the store keeps rules, episode state and the outbox.
//!
//! Every `[alerts] interval_secs` the job takes the evaluator lock (one collector at a time on
//! PostgreSQL), evaluates every rule on the collector's clock and records the findings (which
//! enqueues one notification per new episode; once a UTC day it also removes history older than
//! `beacon_store::alerts::HISTORY_DAYS`), then leases the notifications due and posts them.
//! Leases outlive the request timeout, so two senders never post one notification at once; a
//! sender that dies mid-way leaves its lease to run out, and the notification is posted again
//! (at least once: receivers can drop a repeat by the webhook body's `id`).

use crate::error::ApiError;
use crate::{AppState, Clock};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use beacon_store::Store;
use beacon_store::alerts::{
    self as rules, AttemptOutcome, ClaimedNotification, EvalContext, NewAlertRuleRow,
    StoredAlertRule,
};
use beacon_wire::FieldError;
use beacon_wire::alert::{
    AlertDelivery, AlertRule, AlertTestResult, CreatedAlertRule, DestinationKind, NewAlertRule,
    WebhookBody,
};
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;
use std::sync::Arc;
use std::time::Duration;

/// Notifications by outcome of their attempt: `delivered`, `retry`, `failed`.
pub const ALERT_NOTIFICATIONS_TOTAL: &str = "beacon_alert_notifications_total";
/// Rule evaluations by outcome: `ok`, `error`.
pub const ALERT_EVALUATIONS_TOTAL: &str = "beacon_alert_evaluations_total";

/// The header carrying a webhook body's signature.
pub const SIGNATURE_HEADER: &str = "x-beacon-signature";
/// A webhook request's notification id (the body's `id`).
pub const DELIVERY_HEADER: &str = "x-beacon-delivery";
/// How long a sender holds a notification it is posting (well beyond the request timeout).
pub const LEASE: chrono::Duration = chrono::Duration::minutes(2);
/// Notifications one round of the job posts at most.
pub const BATCH: u32 = 20;
/// Most notifications `GET /admin/v1/alerts/history` lists.
pub const MAX_HISTORY: u32 = 1000;

/// Posts notifications: reqwest over rustls (ring, webpki roots), a timeout, no redirects, no
/// retries inside the client (the outbox retries), no kept-alive connections, no proxy.
#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    public_url: Option<String>,
}

/// The answer of a destination that did not take a notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendError {
    pub status: Option<u16>,
    pub message: String,
}

impl Sender {
    pub fn new(config: &crate::config::AlertsConfig) -> Result<Self, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots =
            rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .user_agent(concat!("beacon-collector/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(config.timeout_secs.clamp(1, 10)))
            .timeout(Duration::from_secs(config.timeout_secs.max(1)))
            .redirect(reqwest::redirect::Policy::none())
            .retry(reqwest::retry::never())
            // A notification now and then: no connection is kept between them.
            .pool_max_idle_per_host(0)
            .no_proxy()
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self {
            client,
            public_url: config
                .public_url
                .as_deref()
                .map(|u| u.trim_end_matches('/').to_string())
                .filter(|u| !u.is_empty()),
        })
    }

    /// The dashboard URL of the page that shows more, else the CLI command.
    pub fn link(&self, n: &ClaimedNotification) -> String {
        match (&self.public_url, &n.ui_path) {
            (Some(base), Some(path)) => format!("{base}{path}"),
            _ => n.cli.clone(),
        }
    }

    /// The short message a chat destination shows.
    pub fn chat_text(&self, n: &ClaimedNotification, test: bool) -> String {
        let link = self.link(n);
        let more = if link.starts_with("http") {
            link
        } else {
            format!("`{link}`")
        };
        format!(
            "{}Beacon alert “{}” ({}): {}. More: {more}",
            if test { "[test] " } else { "" },
            n.rule.name,
            n.rule.kind,
            n.text.trim_end_matches('.'),
        )
    }

    /// The body and headers of `n` for its destination.
    pub fn request(
        &self,
        n: &ClaimedNotification,
        test: bool,
    ) -> (Vec<u8>, Vec<(&'static str, String)>) {
        match n.rule.destination {
            DestinationKind::Mattermost | DestinationKind::Slack => {
                let body = serde_json::json!({ "text": self.chat_text(n, test) });
                (body.to_string().into_bytes(), Vec::new())
            }
            DestinationKind::Webhook => {
                let id = format!("{}:{}:{}", n.rule.id, n.episode_key, n.episode);
                let body = WebhookBody {
                    id: if test { format!("{id}:{}", n.id) } else { id },
                    rule_id: n.rule.id,
                    rule_name: n.rule.name.clone(),
                    kind: n.rule.kind,
                    episode_key: n.episode_key.clone(),
                    episode: n.episode,
                    fired_at: n.created_at,
                    text: n.text.clone(),
                    link: self.link(n),
                    details: n.details.clone(),
                    test,
                };
                let bytes = serde_json::to_vec(&body).expect("a webhook body serialises");
                let mut headers = vec![(DELIVERY_HEADER, body.id.clone())];
                if let Some(secret) = &n.rule.secret {
                    headers.push((SIGNATURE_HEADER, signature(secret, &bytes)));
                }
                (bytes, headers)
            }
        }
    }

    /// Posts `n`; `Ok(status)` for a 2xx answer.
    pub async fn send(&self, n: &ClaimedNotification, test: bool) -> Result<u16, SendError> {
        let (body, headers) = self.request(n, test);
        let mut req = self
            .client
            .post(&n.rule.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        for (name, value) in headers {
            req = req.header(name, value);
        }
        match req.send().await {
            Ok(resp) if resp.status().is_success() => Ok(resp.status().as_u16()),
            Ok(resp) => Err(SendError {
                status: Some(resp.status().as_u16()),
                message: format!("http {}", resp.status().as_u16()),
            }),
            Err(e) => Err(SendError {
                status: None,
                message: describe(e),
            }),
        }
    }
}

/// `sha256=<hex>`: HMAC-SHA-256 of `body` keyed with the secret's characters.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A request error and its causes, one line, with the URL left out (it is a secret).
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut parts = vec![e.to_string()];
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.dedup();
    let text = parts.join(": ");
    text.chars().take(300).collect()
}

/// Every `every`: evaluate the rules (when this collector gets the lock), then post what is due.
pub async fn job(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    sender: Sender,
    ctx: impl Fn(chrono::DateTime<chrono::Utc>) -> EvalContext + Send + 'static,
    every: Duration,
    rounds: Arc<std::sync::atomic::AtomicU64>,
) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut purged: Option<chrono::NaiveDate> = None;
    loop {
        tick.tick().await;
        match store.try_lock_alerts().await {
            Ok(Some(lock)) => {
                let now = clock.now();
                evaluate_all(&*store, &ctx(now)).await;
                // Once a UTC day, by the evaluator: history older than HISTORY_DAYS goes.
                if purged != Some(now.date_naive()) {
                    let before = now - chrono::Duration::days(rules::HISTORY_DAYS);
                    match store.purge_alert_history(before).await {
                        Ok(n) => {
                            purged = Some(now.date_naive());
                            if n > 0 {
                                tracing::info!(removed = n, "old alert notifications removed");
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "alert history purge failed"),
                    }
                }
                lock.release().await;
            }
            Ok(None) => tracing::debug!("alert rules evaluated by another collector"),
            Err(e) => tracing::warn!(error = %e, "alert evaluation skipped"),
        }
        if let Err(e) = deliver_due(&*store, &*clock, &sender).await {
            tracing::warn!(error = %e, "alert delivery failed; retrying on schedule");
        }
        rounds.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Evaluates every rule at `ctx.now` and records its findings; a rule that fails is logged and
/// left for the next round.
pub async fn evaluate_all(store: &dyn Store, ctx: &EvalContext) {
    let all = match store.alert_rules().await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read alert rules");
            return;
        }
    };
    for rule in all {
        let result = async {
            match rules::evaluate(store, &rule, ctx).await? {
                Some(findings) => {
                    store
                        .record_alert_findings(rule.id, ctx.now, &findings)
                        .await
                }
                None => Ok(0),
            }
        }
        .await;
        match result {
            Ok(n) => {
                metrics::counter!(ALERT_EVALUATIONS_TOTAL, "outcome" => "ok").increment(1);
                if n > 0 {
                    tracing::info!(rule = rule.id, kind = %rule.kind, enqueued = n, "alert fired");
                }
            }
            Err(e) => {
                metrics::counter!(ALERT_EVALUATIONS_TOTAL, "outcome" => "error").increment(1);
                tracing::warn!(rule = rule.id, error = %e, "alert rule evaluation failed");
            }
        }
    }
}

/// Leases the notifications due now and posts them, recording each outcome.
pub async fn deliver_due(
    store: &dyn Store,
    clock: &dyn Clock,
    sender: &Sender,
) -> Result<usize, beacon_store::StoreError> {
    let now = clock.now();
    let due = store
        .claim_alert_notifications(now, now + LEASE, BATCH)
        .await?;
    let n = due.len();
    for note in due {
        let result = sender.send(&note, false).await;
        let at = clock.now();
        let outcome = match result {
            Ok(_) => AttemptOutcome::Delivered,
            Err(e) => rules::after_failure(note.attempts, e.message, at),
        };
        let label = match &outcome {
            AttemptOutcome::Delivered => "delivered",
            AttemptOutcome::Retry { .. } => "retry",
            AttemptOutcome::Failed { .. } => "failed",
        };
        metrics::counter!(ALERT_NOTIFICATIONS_TOTAL, "outcome" => label).increment(1);
        match &outcome {
            AttemptOutcome::Delivered => {
                tracing::info!(
                    id = note.id,
                    rule = note.rule.id,
                    "alert notification delivered"
                )
            }
            AttemptOutcome::Retry { error, next_at } => tracing::warn!(
                id = note.id, rule = note.rule.id, attempts = note.attempts, %error, %next_at,
                "alert notification not delivered; retrying"
            ),
            AttemptOutcome::Failed { error } => tracing::warn!(
                id = note.id, rule = note.rule.id, attempts = note.attempts, %error,
                "alert notification failed"
            ),
        }
        store
            .finish_alert_notification(note.id, note.attempts, at, &outcome)
            .await?;
    }
    Ok(n)
}

/// The evaluation context of a collector with this configuration.
pub fn context(config: &crate::Config, now: chrono::DateTime<chrono::Utc>) -> EvalContext {
    EvalContext {
        now,
        min_group_size: config.reports.min_group_size,
        exposure_window_days: config.reports.exposure_window_days,
        gone_after_days: config.reports.gone_after_days,
    }
}

// --- Admin API.

async fn listed(s: &AppState, rule: &StoredAlertRule) -> Result<AlertRule, ApiError> {
    let firing = s
        .store
        .alert_states(rule.id)
        .await?
        .iter()
        .filter(|st| st.firing)
        .count() as u64;
    Ok(rule.listed(firing))
}

/// `GET /admin/v1/alerts`.
pub async fn list(State(s): State<AppState>) -> Result<Json<Vec<AlertRule>>, ApiError> {
    Ok(Json(rule_list(&s).await?))
}

/// Every rule as listed (the admin API's and the dashboard's).
pub async fn rule_list(s: &AppState) -> Result<Vec<AlertRule>, ApiError> {
    let mut out = Vec::new();
    for r in s.store.alert_rules().await? {
        out.push(listed(s, &r).await?);
    }
    Ok(out)
}

/// `POST /admin/v1/alerts`: `201` with the rule, and a webhook's secret (shown this once).
pub async fn create(
    State(s): State<AppState>,
    body: Result<Json<NewAlertRule>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<CreatedAlertRule>), ApiError> {
    let Json(new) = body?;
    Ok((StatusCode::CREATED, Json(new_rule(&s, new).await?)))
}

/// Checks and stores a rule (the admin API's and the dashboard's).
pub async fn new_rule(s: &AppState, new: NewAlertRule) -> Result<CreatedAlertRule, ApiError> {
    let name = beacon_wire::alert::check_name(&new.name)?;
    let url = check_url(&new.url)?;
    let params = new.params.resolve(new.kind)?;
    let secret = (new.destination == DestinationKind::Webhook)
        .then(|| hex::encode(rand::random::<[u8; 32]>()));
    let rule = s
        .store
        .create_alert_rule(&NewAlertRuleRow {
            name,
            kind: new.kind,
            destination: new.destination,
            url,
            secret: secret.clone(),
            params,
            created_at: s.clock.now(),
        })
        .await?;
    tracing::info!(id = rule.id, kind = %rule.kind, destination = %rule.destination, "alert rule created");
    Ok(CreatedAlertRule {
        rule: rule.listed(0),
        secret,
    })
}

fn check_url(url: &str) -> Result<String, FieldError> {
    let bad = || {
        FieldError::new(
            "url",
            format!(
                "must be an http:// or https:// url with a host, without spaces, at most {} characters",
                beacon_wire::alert::MAX_URL
            ),
        )
    };
    let scheme_ok = ["http://", "https://"].iter().any(|p| {
        url.get(..p.len())
            .is_some_and(|s| s.eq_ignore_ascii_case(p))
    });
    // The URL parser would drop spaces and control characters silently: refuse them instead.
    if url.len() > beacon_wire::alert::MAX_URL
        || !scheme_ok
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(bad());
    }
    let parsed = reqwest::Url::parse(url).map_err(|_| bad())?;
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad());
    }
    Ok(parsed.to_string())
}

async fn stored_rule(s: &AppState, id: &str) -> Result<StoredAlertRule, ApiError> {
    let id: i64 = crate::error::path_number("id", id)?;
    s.store
        .alert_rule(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("alert rule {id} not found")))
}

/// `GET /admin/v1/alerts/{id}`.
pub async fn show(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<AlertRule>, ApiError> {
    let rule = stored_rule(&s, &id).await?;
    Ok(Json(listed(&s, &rule).await?))
}

/// `DELETE /admin/v1/alerts/{id}`: the rule removed.
pub async fn remove(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<AlertRule>, ApiError> {
    Ok(Json(remove_rule(&s, &id).await?))
}

/// Removes a rule (the admin API's and the dashboard's).
pub async fn remove_rule(s: &AppState, id: &str) -> Result<AlertRule, ApiError> {
    let rule = stored_rule(s, id).await?;
    let shown = listed(s, &rule).await?;
    if !s.store.delete_alert_rule(rule.id).await? {
        return Err(ApiError::NotFound(format!(
            "alert rule {} not found",
            rule.id
        )));
    }
    tracing::info!(id = rule.id, "alert rule removed");
    Ok(shown)
}

/// `POST /admin/v1/alerts/{id}/test`: posts a sample notification now, once (no retry), and
/// records it in the history.
pub async fn test(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<AlertTestResult>, ApiError> {
    Ok(Json(send_test(&s, &id).await?))
}

/// Sends a rule's sample (the admin API's and the dashboard's).
pub async fn send_test(s: &AppState, id: &str) -> Result<AlertTestResult, ApiError> {
    let rule = stored_rule(s, id).await?;
    let now = s.clock.now();
    let note = s
        .store
        .create_alert_test(rule.id, now, &rules::sample(&rule), now + LEASE)
        .await?;
    let result = s.alerts.send(&note, true).await;
    let outcome = match &result {
        Ok(_) => AttemptOutcome::Delivered,
        Err(e) => AttemptOutcome::Failed {
            error: e.message.clone(),
        },
    };
    s.store
        .finish_alert_notification(note.id, note.attempts, s.clock.now(), &outcome)
        .await?;
    let delivery = s
        .store
        .alert_history(Some(rule.id), 20)
        .await?
        .into_iter()
        .find(|d| d.id == note.id)
        .ok_or_else(|| ApiError::Internal("the test notification is not in the history".into()))?;
    Ok(match result {
        Ok(status) => AlertTestResult {
            delivered: true,
            status: Some(status),
            error: None,
            delivery,
        },
        Err(e) => AlertTestResult {
            delivered: false,
            status: e.status,
            error: Some(e.message),
            delivery,
        },
    })
}

#[derive(Debug, Default, Deserialize)]
pub struct HistoryParams {
    rule: Option<String>,
    limit: Option<String>,
}

/// `GET /admin/v1/alerts/history[?rule=ID&limit=N]`: notifications, newest first.
pub async fn history(
    State(s): State<AppState>,
    Query(p): Query<HistoryParams>,
) -> Result<Json<Vec<AlertDelivery>>, ApiError> {
    let limit: u32 = crate::admin::number("limit", &p.limit)?.unwrap_or(100);
    if limit == 0 || limit > MAX_HISTORY {
        return Err(
            FieldError::new("limit", format!("must be between 1 and {MAX_HISTORY}")).into(),
        );
    }
    let rule: Option<i64> = crate::admin::number("rule", &p.rule)?;
    Ok(Json(s.store.alert_history(rule, limit).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_must_be_http_with_a_host() {
        assert!(check_url("https://chat.example.com/hooks/x").is_ok());
        assert!(check_url("http://127.0.0.1:8065/hooks/x").is_ok());
        for bad in [
            "ftp://x/y",
            "file:///etc/passwd",
            "https://",
            "hooks/x",
            "",
            "http:x",
            " http://x",
            "http://x/a b",
        ] {
            assert_eq!(check_url(bad).unwrap_err().field, "url", "{bad}");
        }
    }

    #[test]
    fn signatures_are_hmac_sha256_hex() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
