//! Alerts (`/admin/v1/alerts`, `beacon alert`): rules, their destinations, and the notifications
//! they send. The collector serialises these bodies, the CLI reads them; the webhook body a
//! destination receives is [`WebhookBody`].

use crate::FieldError;
use crate::sentry::Level;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a rule watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// The first event of a new error issue.
    NewIssue,
    /// Events of one issue in the last hour above a multiple of its hourly average over the
    /// previous 7 days.
    IssueSpike,
    /// An app version slower than the one before it, by the rule of `beacon perf regressions`.
    PerfRegression,
    /// Days after a bulletin's publication, servers on affected versions are still a large share
    /// of those that checked in.
    Exposure,
    /// Fewer servers checked in today (pro rata) than a share of the 7-day average.
    FleetDrop,
}

impl AlertKind {
    pub const ALL: [AlertKind; 5] = [
        AlertKind::NewIssue,
        AlertKind::IssueSpike,
        AlertKind::PerfRegression,
        AlertKind::Exposure,
        AlertKind::FleetDrop,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::NewIssue => "new_issue",
            AlertKind::IssueSpike => "issue_spike",
            AlertKind::PerfRegression => "perf_regression",
            AlertKind::Exposure => "exposure",
            AlertKind::FleetDrop => "fleet_drop",
        }
    }

    pub fn parse(s: &str) -> Option<AlertKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for AlertKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a rule's notifications go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DestinationKind {
    /// A Mattermost incoming webhook: `{"text": …}`.
    Mattermost,
    /// A Slack incoming webhook: `{"text": …}`.
    Slack,
    /// Any HTTP endpoint: a JSON [`WebhookBody`] signed with HMAC-SHA-256 in
    /// `X-Beacon-Signature: sha256=<hex>`.
    Webhook,
}

impl DestinationKind {
    pub const ALL: [DestinationKind; 3] = [
        DestinationKind::Mattermost,
        DestinationKind::Slack,
        DestinationKind::Webhook,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DestinationKind::Mattermost => "mattermost",
            DestinationKind::Slack => "slack",
            DestinationKind::Webhook => "webhook",
        }
    }

    pub fn parse(s: &str) -> Option<DestinationKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for DestinationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rule's parameters. Each kind reads its own (the others must be absent); a rule as stored and
/// listed has every parameter of its kind filled in ([`AlertParams::resolve`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertParams {
    /// `new_issue`, `issue_spike`: only issues of this project (default: every project).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<i64>,
    /// `new_issue`: only issues at this level or above (default: every level).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_level: Option<Level>,
    /// `new_issue`: only issues with events in this environment (default: any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// `issue_spike`: events in the last hour must exceed this many times the issue's hourly
    /// average over the previous 7 days (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    /// `issue_spike`: and be at least this many (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_count: Option<u64>,
    /// `perf_regression`: only this trace name (default: every trace).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
    /// `perf_regression`: a share, `0.1` flags a p75 or p95 more than 10 % slower (default 0.1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// `perf_regression`: samples each version needs (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_samples: Option<u64>,
    /// `exposure`: only this bulletin (default: every bulletin not retracted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bulletin: Option<String>,
    /// `exposure`: days after publication before the rule judges a bulletin (default 7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_days: Option<u32>,
    /// `exposure`: fires while affected servers are at least this percentage of the servers that
    /// checked in (default 10). `fleet_drop`: fires while today's servers (pro rata) are below
    /// this percentage of the 7-day average (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
}

/// Longest rule name.
pub const MAX_NAME: usize = 100;
/// Longest destination URL.
pub const MAX_URL: usize = 2000;

impl AlertParams {
    /// The parameters of `kind` with defaults filled in; a parameter of another kind, or one out
    /// of range, is a [`FieldError`] naming it (`params.<name>`).
    pub fn resolve(&self, kind: AlertKind) -> Result<AlertParams, FieldError> {
        use AlertKind::*;
        let allowed: &[&str] = match kind {
            NewIssue => &["project_id", "min_level", "environment"],
            IssueSpike => &["project_id", "factor", "min_count"],
            PerfRegression => &["trace", "threshold", "min_samples"],
            Exposure => &["bulletin", "after_days", "percent"],
            FleetDrop => &["percent"],
        };
        for (name, set) in [
            ("project_id", self.project_id.is_some()),
            ("min_level", self.min_level.is_some()),
            ("environment", self.environment.is_some()),
            ("factor", self.factor.is_some()),
            ("min_count", self.min_count.is_some()),
            ("trace", self.trace.is_some()),
            ("threshold", self.threshold.is_some()),
            ("min_samples", self.min_samples.is_some()),
            ("bulletin", self.bulletin.is_some()),
            ("after_days", self.after_days.is_some()),
            ("percent", self.percent.is_some()),
        ] {
            if set && !allowed.contains(&name) {
                return Err(FieldError::new(
                    format!("params.{name}"),
                    format!(
                        "is not a parameter of {kind}; it takes {}",
                        allowed.join(", ")
                    ),
                ));
            }
        }
        let bad = |name: &str, problem: String| FieldError::new(format!("params.{name}"), problem);
        let text = |name: &str, v: &Option<String>| -> Result<Option<String>, FieldError> {
            match v.as_deref().map(str::trim) {
                None => Ok(None),
                Some(t)
                    if t.is_empty()
                        || t.chars().count() > 200
                        || t.chars().any(char::is_control) =>
                {
                    Err(bad(name, "must be 1 to 200 printable characters".into()))
                }
                Some(t) => Ok(Some(t.to_string())),
            }
        };
        let mut out = AlertParams::default();
        match kind {
            NewIssue | IssueSpike => {
                if let Some(p) = self.project_id
                    && p < 1
                {
                    return Err(bad("project_id", format!("must be a project id, got {p}")));
                }
                out.project_id = self.project_id;
            }
            _ => {}
        }
        match kind {
            NewIssue => {
                out.min_level = self.min_level;
                out.environment = text("environment", &self.environment)?;
            }
            IssueSpike => {
                let factor = self.factor.unwrap_or(10.0);
                if !(factor.is_finite() && factor > 1.0 && factor <= 1000.0) {
                    return Err(bad(
                        "factor",
                        format!("must be above 1 and at most 1000, got {factor}"),
                    ));
                }
                let min_count = self.min_count.unwrap_or(10);
                if !(1..=1_000_000_000).contains(&min_count) {
                    return Err(bad(
                        "min_count",
                        format!("must be between 1 and 1000000000, got {min_count}"),
                    ));
                }
                out.factor = Some(factor);
                out.min_count = Some(min_count);
            }
            PerfRegression => {
                if let Some(t) = &self.trace
                    && crate::mobile::TraceName::parse(t).is_none()
                {
                    let names: Vec<&str> = crate::mobile::TraceName::ALL
                        .iter()
                        .map(|t| t.as_str())
                        .collect();
                    return Err(bad(
                        "trace",
                        format!("{t:?} is not a trace name; one of {}", names.join(", ")),
                    ));
                }
                out.trace = self.trace.clone();
                let threshold = self.threshold.unwrap_or(0.1);
                if !(threshold.is_finite() && threshold > 0.0 && threshold <= 100.0) {
                    return Err(bad(
                        "threshold",
                        format!("must be a share above 0 and at most 100, got {threshold}"),
                    ));
                }
                let min_samples = self.min_samples.unwrap_or(100);
                if !(1..=1_000_000_000).contains(&min_samples) {
                    return Err(bad(
                        "min_samples",
                        format!("must be between 1 and 1000000000, got {min_samples}"),
                    ));
                }
                out.threshold = Some(threshold);
                out.min_samples = Some(min_samples);
            }
            Exposure => {
                out.bulletin = text("bulletin", &self.bulletin)?;
                let after = self.after_days.unwrap_or(7);
                if after > 3650 {
                    return Err(bad(
                        "after_days",
                        format!("must be at most 3650, got {after}"),
                    ));
                }
                out.after_days = Some(after);
                out.percent = Some(percent(self.percent, 10.0)?);
            }
            FleetDrop => out.percent = Some(percent(self.percent, 50.0)?),
        }
        Ok(out)
    }
}

fn percent(v: Option<f64>, default: f64) -> Result<f64, FieldError> {
    let p = v.unwrap_or(default);
    if p.is_finite() && p > 0.0 && p <= 100.0 {
        Ok(p)
    } else {
        Err(FieldError::new(
            "params.percent",
            format!("must be above 0 and at most 100, got {p}"),
        ))
    }
}

/// `POST /admin/v1/alerts`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAlertRule {
    pub name: String,
    pub kind: AlertKind,
    pub destination: DestinationKind,
    /// The incoming webhook's or endpoint's URL (`https://`, or `http://`): a secret, stored and
    /// never shown again in full.
    pub url: String,
    #[serde(default, deserialize_with = "params_object")]
    pub params: AlertParams,
}

/// `params` as a JSON object only (serde would also read a struct from an array).
fn params_object<'de, D: serde::Deserializer<'de>>(d: D) -> Result<AlertParams, D::Error> {
    let map = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
    serde_json::from_value(serde_json::Value::Object(map)).map_err(serde::de::Error::custom)
}

/// A rule as listed. The URL is shown masked ([`mask_url`]), the webhook secret never.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRule {
    pub id: i64,
    pub name: String,
    pub kind: AlertKind,
    pub destination: DestinationKind,
    /// Scheme and host of the URL, the rest hidden: `https://chat.example.com/…`.
    pub url: String,
    pub params: AlertParams,
    pub created_at: DateTime<Utc>,
    /// Episodes firing now (e.g. issues spiking).
    pub firing: u64,
}

/// The answer to `POST /admin/v1/alerts`: the only time a webhook's signing secret is shown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreatedAlertRule {
    #[serde(flatten)]
    pub rule: AlertRule,
    /// The HMAC-SHA-256 key of `X-Beacon-Signature` (64 hex characters); `webhook` only.
    #[serde(default)]
    pub secret: Option<String>,
}

/// What became of a notification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Waiting for its first attempt or a retry (`next_at`).
    Pending,
    /// The destination answered 2xx.
    Delivered,
    /// Every attempt failed (or, for a test, the one attempt).
    Failed,
    /// Its rule was removed before it was delivered.
    Cancelled,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        [
            DeliveryStatus::Pending,
            DeliveryStatus::Delivered,
            DeliveryStatus::Failed,
            DeliveryStatus::Cancelled,
        ]
        .into_iter()
        .find(|d| d.as_str() == s)
    }
}

/// One notification (an episode of a rule, or a test), as `beacon alert history` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertDelivery {
    pub id: i64,
    pub rule_id: i64,
    pub rule_name: String,
    /// What the episode is about within the rule: an issue id, `trace@version`, a bulletin id,
    /// `fleet`; `test` for a sample sent by `beacon alert test`.
    pub episode_key: String,
    /// 1 for the first episode of this key, 2 after it resolved and fired again, …; 0 for a test.
    pub episode: i64,
    pub created_at: DateTime<Utc>,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub last_attempt_at: Option<DateTime<Utc>>,
    /// When a pending notification is tried next.
    pub next_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    /// The last failure: an HTTP status or a connection error.
    pub last_error: Option<String>,
    /// The message sent.
    pub text: String,
}

/// `POST /admin/v1/alerts/{id}/test`: the sample's delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertTestResult {
    pub delivered: bool,
    /// The destination's HTTP status, when it answered.
    pub status: Option<u16>,
    pub error: Option<String>,
    pub delivery: AlertDelivery,
}

/// The JSON body of a `webhook` destination, signed with HMAC-SHA-256 of exactly these bytes in
/// `X-Beacon-Signature: sha256=<hex>`. `id` is the same on every retry of one notification, so a
/// receiver can drop a repeat.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookBody {
    /// `<rule id>:<episode key>:<episode>`.
    pub id: String,
    pub rule_id: i64,
    pub rule_name: String,
    pub kind: AlertKind,
    pub episode_key: String,
    pub episode: i64,
    pub fired_at: DateTime<Utc>,
    /// The short message a chat destination gets.
    pub text: String,
    /// A dashboard URL (when the collector knows its public URL) or the CLI command that shows more.
    pub link: String,
    /// The figures the rule judged (counts, shares, versions), no personal data.
    pub details: serde_json::Value,
    /// True for a sample sent by `beacon alert test`.
    pub test: bool,
}

/// `scheme://host[:port]/…`: what may be shown of a destination URL (its path and query often
/// hold the secret of an incoming webhook).
pub fn mask_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "…".into();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    // Credentials before `@` are secrets too.
    let host = authority.rsplit('@').next().unwrap_or("");
    format!("{scheme}://{host}/…")
}

/// Checks a rule's name (1 to [`MAX_NAME`] characters, no control characters, not only white
/// space) and trims it.
pub fn check_name(name: &str) -> Result<String, FieldError> {
    if name.trim().is_empty()
        || name.chars().count() > MAX_NAME
        || name.chars().any(char::is_control)
    {
        return Err(FieldError::new(
            "name",
            format!(
                "must be 1 to {MAX_NAME} characters without control characters, not only white space"
            ),
        ));
    }
    Ok(name.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_masked_to_scheme_and_host() {
        assert_eq!(
            mask_url("https://chat.example.com/hooks/abc123"),
            "https://chat.example.com/…"
        );
        assert_eq!(
            mask_url("http://user:pw@127.0.0.1:9000/x?token=1"),
            "http://127.0.0.1:9000/…"
        );
        assert_eq!(mask_url("nonsense"), "…");
    }

    #[test]
    fn params_are_an_object() {
        let rule = |params: &str| {
            serde_json::from_str::<NewAlertRule>(&format!(
                r#"{{"name":"n","kind":"fleet_drop","destination":"slack","url":"https://x/y","params":{params}}}"#
            ))
        };
        assert!(rule("[null, null]").is_err());
        assert!(rule(r#"{"unknown": 1}"#).is_err());
        assert_eq!(
            rule(r#"{"percent": 30}"#).unwrap().params.percent,
            Some(30.0)
        );
    }

    #[test]
    fn params_take_defaults_and_refuse_other_kinds() {
        let p = AlertParams::default()
            .resolve(AlertKind::IssueSpike)
            .unwrap();
        assert_eq!((p.factor, p.min_count), (Some(10.0), Some(10)));
        let p = AlertParams::default()
            .resolve(AlertKind::FleetDrop)
            .unwrap();
        assert_eq!(p.percent, Some(50.0));
        let e = AlertParams {
            factor: Some(3.0),
            ..Default::default()
        }
        .resolve(AlertKind::NewIssue)
        .unwrap_err();
        assert_eq!(e.field, "params.factor");
        let e = AlertParams {
            percent: Some(0.0),
            ..Default::default()
        }
        .resolve(AlertKind::Exposure)
        .unwrap_err();
        assert_eq!(e.field, "params.percent");
        let e = AlertParams {
            trace: Some("nope".into()),
            ..Default::default()
        }
        .resolve(AlertKind::PerfRegression)
        .unwrap_err();
        assert_eq!(e.field, "params.trace");
    }
}
