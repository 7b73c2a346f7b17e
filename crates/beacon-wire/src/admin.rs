//! JSON bodies of the admin API (`/admin/v1/…`). The collector serialises them, the CLI reads them.

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

/// Every error answered by Beacon's HTTP endpoints has this body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable, machine-readable code, e.g. `invalid_field`, `unauthorized`, `not_found`.
    pub error: String,
    /// The offending field, when one is to blame.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub field: Option<String>,
    /// A sentence for humans, lower case.
    pub message: String,
}

/// The dimension a fleet report groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum FleetDimension {
    /// `X.Y.Z`.
    #[default]
    Version,
    /// `enterprise` or `team`.
    Edition,
    Os,
    Db,
    /// Database type and version, e.g. `postgres 15.2`.
    Dbv,
}

impl FleetDimension {
    pub const ALL: [FleetDimension; 5] = [
        FleetDimension::Version,
        FleetDimension::Edition,
        FleetDimension::Os,
        FleetDimension::Db,
        FleetDimension::Dbv,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FleetDimension::Version => "version",
            FleetDimension::Edition => "edition",
            FleetDimension::Os => "os",
            FleetDimension::Db => "db",
            FleetDimension::Dbv => "dbv",
        }
    }
}

impl std::str::FromStr for FleetDimension {
    type Err = crate::FieldError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| {
                crate::FieldError::new(
                    "by",
                    format!("must be version, edition, os, db or dbv, got {s:?}"),
                )
            })
    }
}

/// Sums over the servers of one group (each server's latest check in the range).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupCounts {
    pub servers: u64,
    pub users: i64,
    pub activated_users: i64,
    pub teams: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetGroup {
    /// The group's value, or `other` for the groups folded for k-anonymity.
    pub key: String,
    #[serde(flatten)]
    pub counts: GroupCounts,
}

/// How many servers fall into each size bucket of one measure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    /// `0`, `1-10`, `11-100`, … or `other` for folded buckets.
    pub range: String,
    pub servers: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Distributions {
    pub users: Vec<Bucket>,
    pub activated_users: Vec<Bucket>,
    pub teams: Vec<Bucket>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FleetReport {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub by: FleetDimension,
    pub include_test: bool,
    pub min_group_size: u64,
    /// True when at least one group or bucket was folded into `other`.
    pub thresholded: bool,
    /// Totals over the whole fleet (never folded).
    pub total: GroupCounts,
    pub groups: Vec<FleetGroup>,
    pub distributions: Distributions,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrowthDay {
    pub day: NaiveDate,
    /// Distinct servers that checked in that day.
    pub servers: u64,
    /// Servers whose first check ever was that day.
    pub new: u64,
    /// Servers whose last check ever was `gone_after_days` before that day (silent since).
    pub gone: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrowthReport {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub include_test: bool,
    pub gone_after_days: u32,
    /// Growth reports counts, not groups of servers, so nothing is folded; always false.
    pub thresholded: bool,
    pub days: Vec<GrowthDay>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExposureDay {
    pub day: NaiveDate,
    /// Servers that checked in that day.
    pub servers_checked: u64,
    /// Of those, the servers on an affected version.
    pub affected_servers: u64,
    pub affected_activated_users: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BulletinExposure {
    pub id: String,
    pub title: String,
    pub severity: crate::bulletin::Severity,
    pub affected: String,
    pub published_at: DateTime<Utc>,
    pub retracted_at: Option<DateTime<Utc>>,
    /// Servers whose latest check in the window was on an affected version.
    pub servers: u64,
    pub activated_users: i64,
    /// The same servers by version; versions with fewer than `min_group_size` servers are folded.
    pub by_version: Vec<FleetGroup>,
    /// Per day, from a week before publication to the last day of the window: patch adoption.
    pub timeline: Vec<ExposureDay>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExposureReport {
    /// The window is `[as_of - window_days + 1, as_of]`.
    pub as_of: NaiveDate,
    pub window_days: u32,
    pub include_test: bool,
    pub min_group_size: u64,
    pub thresholded: bool,
    /// Servers with a check in the window (the denominator).
    pub servers_in_window: u64,
    pub bulletins: Vec<BulletinExposure>,
}

/// A rejected item, as kept in the dead-letter table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub id: i64,
    pub received_at: DateTime<Utc>,
    pub channel: String,
    pub reason: String,
    /// A scrubbed copy of the input, truncated.
    pub payload: String,
}

/// A project that receives error events, with its keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectInfo {
    pub id: i64,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub keys: Vec<KeyInfo>,
}

/// A project's public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyInfo {
    pub public_key: String,
    pub project_id: i64,
    pub enabled: bool,
    /// Events per minute; `None` means the collector's default.
    pub rate_limit_per_minute: Option<u32>,
    /// `https://<key>@<host>/<project id>`, filled in by the collector that answers.
    #[serde(default)]
    pub dsn: Option<String>,
}

/// `POST /admin/v1/projects`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewProject {
    pub name: String,
}

/// `PATCH /admin/v1/keys/{public_key}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyUpdate {
    #[serde(default)]
    pub enabled: Option<bool>,
    /// `0` removes the key's own limit (the default applies).
    #[serde(default)]
    pub rate_limit_per_minute: Option<u32>,
}

/// One issue (a group of events) in a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueSummary {
    pub id: i64,
    pub project_id: i64,
    pub title: String,
    pub culprit: Option<String>,
    pub level: crate::sentry::Level,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    pub count: u64,
    /// Distinct `server_id` tags seen.
    pub servers: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum IssueSort {
    #[default]
    LastSeen,
    Count,
}

/// Filters of the issue list.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueFilter {
    pub project_id: Option<i64>,
    pub release: Option<String>,
    pub environment: Option<String>,
    pub level: Option<crate::sentry::Level>,
    pub sort: IssueSort,
    pub limit: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CountBy<K> {
    pub key: K,
    pub count: u64,
}

/// One issue with its latest (scrubbed) event and its counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssueDetail {
    pub issue: IssueSummary,
    pub latest_event: crate::sentry::StoredEvent,
    pub by_release: Vec<CountBy<Option<String>>>,
    /// Events per environment (`None`: events without one), ordered by environment.
    pub by_environment: Vec<CountBy<Option<String>>>,
    pub by_day: Vec<CountBy<NaiveDate>>,
}

/// A mobile API key, as listed. The key itself is shown once, at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyInfo {
    pub name: String,
    /// The key's first characters, to tell keys apart.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// `POST /admin/v1/apikeys`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    pub name: String,
}

/// The answer to `POST /admin/v1/apikeys`: the only time the key is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreatedApiKey {
    pub key: String,
    #[serde(flatten)]
    pub info: ApiKeyInfo,
}

/// Durations of one group of a performance report, in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PerfGroup {
    /// The group's value of the `by` dimension (`""` when ungrouped, `other` when folded).
    pub value: String,
    pub count: u64,
    /// Distinct devices (exact up to 64, estimated above).
    pub devices: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p75_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
}

/// `GET /admin/v1/perf/percentiles`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PercentileReport {
    pub trace: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub by: Option<crate::mobile::Dimension>,
    pub include_emulators: bool,
    /// Every percentile is within this relative error of the exact value.
    pub relative_accuracy: f64,
    pub min_group_size: u64,
    /// True when a group with fewer than `min_group_size` devices was folded into `other`.
    pub thresholded: bool,
    pub groups: Vec<PerfGroup>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramBucket {
    pub lower_ms: f64,
    pub upper_ms: f64,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramGroup {
    pub value: String,
    pub count: u64,
    pub devices: u64,
    /// From the first to the last non-empty bucket.
    pub buckets: Vec<HistogramBucket>,
}

/// `GET /admin/v1/perf/histogram`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramReport {
    pub trace: String,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub by: Option<crate::mobile::Dimension>,
    pub include_emulators: bool,
    pub min_group_size: u64,
    pub thresholded: bool,
    pub groups: Vec<HistogramGroup>,
}

/// One app version against the one before it, for one trace name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Regression {
    pub trace: String,
    pub version: String,
    pub previous_version: String,
    pub samples: u64,
    pub previous_samples: u64,
    pub p75_ms: f64,
    pub previous_p75_ms: f64,
    /// `(p75 − previous p75) / previous p75`; positive is slower.
    pub p75_change: f64,
    pub p95_ms: f64,
    pub previous_p95_ms: f64,
    pub p95_change: f64,
    /// Both sides have `min_samples` and p75 or p95 got slower by more than `threshold`.
    pub flagged: bool,
    /// True when one side has fewer than `min_samples` (never flagged then).
    pub too_few_samples: bool,
}

/// `GET /admin/v1/perf/regressions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegressionReport {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub threshold: f64,
    pub min_samples: u64,
    pub include_emulators: bool,
    pub min_group_size: u64,
    /// True when a version with fewer than `min_group_size` devices was left out.
    pub thresholded: bool,
    pub comparisons: Vec<Regression>,
}

/// An admin token as the dashboard's settings page lists it. Neither the token nor its whole hash
/// is ever shown: `id` is the first 12 hex characters of the token's SHA-256, a public handle to
/// revoke it by.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminTokenInfo {
    pub id: String,
    pub label: String,
    pub created_at: DateTime<Utc>,
}

/// One server release in a release-health report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseHealthRow {
    /// `X.Y.Z`, or `other` for the releases folded for k-anonymity.
    pub version: String,
    /// Servers whose latest check in the range was on this release.
    pub servers: u64,
    /// Of those, the servers that sent at least one error event received in the range.
    pub servers_with_errors: u64,
    /// `1 - servers_with_errors / servers`.
    pub error_free_share: f64,
}

/// `GET /admin/v1/reports/releases`: per server release, the servers on it and how many of them
/// reported errors in `[from, to]` (UTC days). Releases with fewer than `min_group_size` servers are
/// folded into `other`; rows are newest release first, `other` last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseHealthReport {
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub include_test: bool,
    pub min_group_size: u64,
    /// True when at least one release was folded into `other`.
    pub thresholded: bool,
    /// Totals over every release (never folded).
    pub servers: u64,
    pub servers_with_errors: u64,
    pub releases: Vec<ReleaseHealthRow>,
}

/// `POST /admin/v1/forget`: the data of one server (its diagnostic id) or one device (its raw
/// `device_unique_id`, hashed by the collector as at ingestion) to erase. Exactly one of the two.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ForgetRequest {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
}

/// `POST /v1/forget` from the agent: its own diagnostic id, which is its credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentForget {
    pub server_id: String,
}

/// What one deletion removed; also a row of the deletion log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgetRecord {
    pub at: DateTime<Utc>,
    /// The admin token's label, or `agent`.
    pub by: String,
    /// `server` or `device`.
    pub channel: String,
    /// SHA-256 (hex) of the id: the log never holds the id itself.
    pub id_hash: String,
    /// Rows removed: security checks, error events, raw trace events, dead letters naming the id.
    pub checks: u64,
    pub events: u64,
    pub trace_events: u64,
    pub dead_letters: u64,
}

// --- Retention (`[retention]`, `GET /admin/v1/retention`, `POST /admin/v1/retention/apply`).

/// A kind of stored data with a retention period of its own (`[retention] <channel>_days`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetentionChannel {
    /// Security update checks, one row per server and day.
    Checks,
    /// Error events (and, with their last event, their issues).
    Events,
    /// Raw mobile trace events (reports read the sketches, not these).
    TraceEvents,
    /// Aggregates: mobile sketch rows, per UTC day.
    Sketches,
    /// Rejected items kept for inspection.
    DeadLetters,
}

impl RetentionChannel {
    pub const ALL: [RetentionChannel; 5] = [
        RetentionChannel::Checks,
        RetentionChannel::Events,
        RetentionChannel::TraceEvents,
        RetentionChannel::Sketches,
        RetentionChannel::DeadLetters,
    ];

    /// `checks`, `events`, `trace_events`, `sketches`, `dead_letters`: the JSON name and the prefix
    /// of the channel's `[retention]` key.
    pub fn as_str(self) -> &'static str {
        match self {
            RetentionChannel::Checks => "checks",
            RetentionChannel::Events => "events",
            RetentionChannel::TraceEvents => "trace_events",
            RetentionChannel::Sketches => "sketches",
            RetentionChannel::DeadLetters => "dead_letters",
        }
    }
}

impl std::fmt::Display for RetentionChannel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one channel holds now (`GET /admin/v1/retention`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionStatus {
    pub channel: RetentionChannel,
    /// Days kept after the day data belongs to; `0` keeps it forever.
    pub retention_days: u32,
    /// The oldest UTC day holding data of the channel; `None` when it holds none.
    pub oldest_day: Option<NaiveDate>,
    pub rows: u64,
    /// Space on disk of the channel's tables and their indexes (SQLite: the pages they use;
    /// PostgreSQL: `pg_total_relation_size` of the tables and every partition).
    pub bytes: u64,
}

/// What a retention run removed from one channel, or would remove (a dry run).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionOutcome {
    pub channel: RetentionChannel,
    pub retention_days: u32,
    /// The first day kept: data of earlier days expired. `None` when the channel is kept forever.
    pub cutoff: Option<NaiveDate>,
    /// Rows removed (a dry run: rows that would be).
    pub removed: u64,
}

/// `POST /admin/v1/retention/apply`: one run of the retention job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionRun {
    /// True when nothing was removed, only counted.
    pub dry_run: bool,
    /// The UTC day the run judged ages by.
    pub today: NaiveDate,
    pub channels: Vec<RetentionOutcome>,
    /// Issues removed with their last event (a dry run: that would be), with their counts.
    pub issues_removed: u64,
}
