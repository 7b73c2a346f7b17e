//! The storage contract of Beacon.
//!
//! [`Store`] is what the collector needs from a database; each backend (`beacon-store-sqlite`, and
//! PostgreSQL beside it) implements it and keeps every SQL dialect detail to itself. Reports are composed
//! here, once, in [`security`] and [`mobile`], from the few raw queries the trait offers, so both backends answer
//! identically — and the [`conformance`] suite (feature `conformance`) checks that they do.
//!
//! Invariants every backend keeps:
//! * one check row per (server id, UTC day of receipt); a later check that day replaces the values;
//! * [`Store::write_batch`] commits all its operations in one durable transaction, or none of them;
//! * outcomes are reported per operation, in order: the first check of a (server, day) is
//!   [`WriteOutcome::Accepted`], every later one [`WriteOutcome::Duplicate`], across batches and processes.

pub mod alerts;
pub mod mobile;
pub mod retention;
pub mod security;
pub mod ui;

#[cfg(feature = "conformance")]
pub mod conformance;

use async_trait::async_trait;
use beacon_wire::admin::{
    AdminTokenInfo, ApiKeyInfo, DeadLetter, FleetDimension, ForgetRecord, IssueDetail, IssueFilter,
    IssueSummary, KeyInfo, ProjectInfo,
};
use beacon_wire::bulletin::Bulletin;
use chrono::{DateTime, NaiveDate, Utc};
use mobile::{PerfRow, PerfSelect, StoredTrace, TraceBatch};
use security::{CheckRecord, FleetCell, GrowthRaw, ReleaseHealth, ServerSnapshot, VersionDayCount};
use ui::UiSession;

/// Events of one issue on one UTC day ([`Store::issue_day_counts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IssueDayCount {
    pub issue_id: i64,
    pub day: NaiveDate,
    pub count: u64,
}

/// The most issue ids one [`Store::issue_day_counts`] call takes (the admin API's largest page).
pub const MAX_ISSUE_IDS: usize = 1000;

/// Refuses more than [`MAX_ISSUE_IDS`] ids; every backend calls it first.
pub fn check_issue_ids(ids: &[i64]) -> Result<()> {
    if ids.len() > MAX_ISSUE_IDS {
        return Err(StoreError::InvalidInput(format!(
            "at most {MAX_ISSUE_IDS} issue ids at once, got {}",
            ids.len()
        )));
    }
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot be reached or failed to answer; retrying later may work.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// The operation conflicts with existing data (e.g. a bulletin id already taken).
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("not found: {0}")]
    NotFound(String),
    /// The database holds something this version cannot read back (a corrupted row, a newer schema),
    /// or answered in a way that breaks the backend's own invariants. Retrying fails again, and it is
    /// never the caller's fault: a fault to log and look into.
    #[error("store data corrupt: {0}")]
    Corrupt(String),
    /// The connection settings cannot work (a malformed URL, an unusable CA file, a pool that cannot
    /// be built). Only connecting returns it.
    #[error("store configuration invalid: {0}")]
    Config(String),
    /// An argument a report refuses (an empty or too long range, a window of no days). Callers
    /// validate their input first; this is the reports' own guard, not a judgement only the store
    /// can make.
    #[error("invalid argument: {0}")]
    InvalidInput(String),
    /// The database refused a value it was given (PostgreSQL's data exceptions, SQLSTATE class 22):
    /// the same operation will fail again. In a batch, the writer retries each operation alone so
    /// that only the one at fault is refused.
    #[error("store refused the data: {0}")]
    Rejected(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A rejected item to keep in the dead-letter table. `payload` must already be scrubbed and truncated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDeadLetter {
    pub received_at: DateTime<Utc>,
    pub channel: String,
    pub reason: String,
    pub payload: String,
}

/// A scrubbed, grouped error event.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    pub project_id: i64,
    pub received_at: DateTime<Utc>,
    pub event: beacon_wire::sentry::StoredEvent,
    /// `event` serialised as JSON, made by the caller (off the single writer).
    pub event_json: String,
    /// The grouping hash (32 hex), and what a new issue shows.
    pub group_hash: String,
    pub title: String,
    pub culprit: Option<String>,
    /// The event's `server_id` tag, for distinct servers per issue.
    pub server_id: Option<String>,
}

/// One operation of a group-committed batch.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteOp {
    Check(CheckRecord),
    DeadLetter(NewDeadLetter),
    /// An error event: `Accepted` when new, `Duplicate` when its (project, event id) is stored.
    Event(Box<EventRecord>),
    /// A mobile batch's accepted trace events: raw rows, its context and sketch deltas. Always
    /// `Accepted` (trace events carry no id to de-duplicate by).
    Traces(Box<TraceBatch>),
}

impl WriteOp {
    /// `check`, `dead_letter`, `event` or `traces`, for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            WriteOp::Check(_) => "check",
            WriteOp::DeadLetter(_) => "dead_letter",
            WriteOp::Event(_) => "event",
            WriteOp::Traces(_) => "traces",
        }
    }
}

/// What became of one [`WriteOp`] once its batch committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteOutcome {
    /// A new row (for a check: the first from that server that day; for a dead letter: stored).
    Accepted,
    /// A repeat check from the same server on the same day; its values replaced the day's row.
    Duplicate,
    /// The store refused this operation's data ([`StoreError::Rejected`]); nothing of it was written.
    /// Only the ingest writer produces it, after retrying a refused batch one operation at a time.
    Unstorable,
}

/// Held while a collector evaluates alert rules ([`Store::try_lock_alerts`]). Give it back with
/// [`AlertLock::release`]; a lock dropped without it is freed when its connection closes.
#[async_trait]
pub trait AlertLock: Send {
    async fn release(self: Box<Self>);
}

/// What the collector needs from a database. One trait for every channel; its methods are grouped
/// below by channel (security, sentry, mobile), then the keys and admin data they share.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// A short name for logs and metrics: `sqlite`, `postgres`.
    fn backend(&self) -> &'static str;

    /// Succeeds when the database answers a trivial query.
    async fn ping(&self) -> Result<()>;

    /// Commits every operation in one durable transaction and reports each one's outcome, in order.
    /// When it returns `Ok`, the data survives a crash of the process and of the machine. (Shared, so
    /// that the writer can retry the operations one by one after [`StoreError::Rejected`].)
    async fn write_batch(&self, ops: std::sync::Arc<[WriteOp]>) -> Result<Vec<WriteOutcome>>;

    // --- Security: checks, bulletins and the raw queries of the reports in [`security`].

    /// How many check rows are stored (one per server and day).
    async fn count_checks(&self) -> Result<u64>;

    /// Adds a bulletin; [`StoreError::Conflict`] when its id exists, retracted or not.
    async fn insert_bulletin(&self, bulletin: &Bulletin) -> Result<()>;

    /// Every bulletin, retracted ones included, by publication time then id.
    async fn bulletins(&self) -> Result<Vec<Bulletin>>;

    async fn bulletin(&self, id: &str) -> Result<Option<Bulletin>>;

    /// Marks a bulletin retracted (idempotent: a second retraction keeps the first time) and returns it.
    async fn retract_bulletin(&self, id: &str, at: DateTime<Utc>) -> Result<Bulletin>;

    /// Each server's latest check within `[from, to]`; servers whose latest check there has `ut=1`
    /// are left out unless `include_test`. One row per server: for tests and tools; reports use
    /// [`Store::fleet_cells`], whose size does not grow with the fleet.
    async fn latest_per_server(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        include_test: bool,
    ) -> Result<Vec<ServerSnapshot>>;

    /// The servers of [`Store::latest_per_server`] counted per key of `by` and size buckets, computed
    /// in the database with the SQL of [`security::fleet_cells_sql`].
    async fn fleet_cells(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        by: FleetDimension,
        include_test: bool,
    ) -> Result<Vec<FleetCell>>;

    /// Servers and activated users per (day, version) within `[from, to]`; each server's activated
    /// users capped at [`security::COUNT_CAP`] ([`security::capped_sql`]).
    async fn version_day_counts(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        include_test: bool,
    ) -> Result<Vec<VersionDayCount>>;

    /// Per-day counts for the growth report; see [`GrowthRaw`].
    async fn growth_raw(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        last_from: NaiveDate,
        include_test: bool,
    ) -> Result<GrowthRaw>;

    /// Per server version, the servers whose latest check in `[from, to]` is on it (the rule of
    /// [`Store::fleet_cells`], test installs left out unless `include_test`) and how many of them
    /// have at least one stored error event with their `server_id` received in `[from, to]` (UTC
    /// days, inclusive). Computed in the database with [`security::release_health_sql`]; by version.
    async fn release_health(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        include_test: bool,
    ) -> Result<Vec<ReleaseHealth>>;

    // --- Sentry: projects, and the issues events are grouped into.

    /// Creates a project with its first public key; [`StoreError::Conflict`] when the name is taken.
    async fn create_project(
        &self,
        name: &str,
        public_key: &str,
        at: DateTime<Utc>,
    ) -> Result<ProjectInfo>;

    /// Every project with its keys (`dsn` left empty), by id.
    async fn projects(&self) -> Result<Vec<ProjectInfo>>;

    /// Issues matching the filter, sorted and limited as it says.
    async fn issues(&self, filter: &IssueFilter) -> Result<Vec<IssueSummary>>;

    /// One issue with its latest event and counts by release, environment and day.
    async fn issue(&self, id: i64) -> Result<Option<IssueDetail>>;

    /// Events per issue and UTC day from `from` to `to` (both included) for the issues in `ids`
    /// (the issue list's sparklines), ordered by issue then day; days without events are left out,
    /// unknown ids give nothing. At most [`MAX_ISSUE_IDS`] ids, else [`StoreError::InvalidInput`].
    async fn issue_day_counts(
        &self,
        ids: &[i64],
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<IssueDayCount>>;

    /// Events received in `[from, to)` per issue of `ids` (read through the `(issue_id,
    /// received_at)` index), by issue id; issues without any are left out. At most
    /// [`MAX_ISSUE_IDS`] ids, else [`StoreError::InvalidInput`].
    async fn issue_event_counts(
        &self,
        ids: &[i64],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(i64, u64)>>;

    // --- Mobile: the sketch rows of the reports in [`mobile`], compaction and raw trace events.

    /// The sketch rows (compacted rows and deltas not yet compacted) a report needs, unmerged.
    async fn perf_rows(&self, select: &PerfSelect) -> Result<Vec<PerfRow>>;

    /// Brings pending sketch data (deltas, or cells held in memory) into one row per key; returns how
    /// many pending items it merged, 0 when nothing was pending. Reports are exact with or without
    /// it. Safe to run from several collectors at once.
    async fn compact_perf(&self) -> Result<u64>;

    /// Housekeeping the database needs and does not do by itself; returns whether any ran. On
    /// PostgreSQL with `autovacuum` off, the tables updated in place (report rollups, issues and
    /// their counts, sketch rows and deltas) are vacuumed and analysed, one collector at a time:
    /// without it their dead rows grow with every check and the planner's statistics go stale. A
    /// backend that needs nothing (SQLite reuses the space of rows updated in place) does nothing.
    async fn maintain(&self) -> Result<bool> {
        Ok(false)
    }

    /// How many raw trace events are stored.
    async fn count_trace_events(&self) -> Result<u64>;

    /// The newest raw trace events with their contexts (drill-down).
    async fn trace_events(&self, limit: u32) -> Result<Vec<StoredTrace>>;

    // --- Keys: DSN project keys, mobile API keys and the collector's secrets.

    /// One key, enabled or not.
    async fn project_key(&self, public_key: &str) -> Result<Option<KeyInfo>>;

    /// Enables/disables a key or sets its rate limit (`Some(0)` clears it); returns the key.
    async fn update_key(
        &self,
        public_key: &str,
        enabled: Option<bool>,
        rate_limit: Option<u32>,
    ) -> Result<KeyInfo>;

    /// Stores a mobile API key's SHA-256 (hex); [`StoreError::Conflict`] when the name is taken.
    async fn create_api_key(
        &self,
        name: &str,
        key_hash: &str,
        prefix: &str,
        at: DateTime<Utc>,
    ) -> Result<ApiKeyInfo>;

    /// Every API key, revoked ones included, by creation.
    async fn api_keys(&self) -> Result<Vec<ApiKeyInfo>>;

    /// Revokes a key by name (idempotent: a second revocation keeps the first time).
    async fn revoke_api_key(&self, name: &str, at: DateTime<Utc>) -> Result<ApiKeyInfo>;

    /// True when a key with this hash exists and is not revoked.
    async fn api_key_valid(&self, key_hash: &str) -> Result<bool>;

    /// The secret stored under `name`; when there is none yet, stores `candidate` and returns it.
    /// Every collector on one database gets the same value.
    async fn secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>>;

    // --- Admin: admin tokens (the settings page lists and revokes them) and dead letters.

    /// Stores the SHA-256 (hex) of an admin token.
    async fn add_admin_token(&self, token_hash: &str, label: &str, at: DateTime<Utc>)
    -> Result<()>;

    async fn admin_token_count(&self) -> Result<u64>;

    async fn admin_token_valid(&self, token_hash: &str) -> Result<bool>;

    /// Every admin token by its public id ([`ui::admin_token_id`]), oldest first.
    async fn admin_tokens(&self) -> Result<Vec<AdminTokenInfo>>;

    /// The label of the token with this hash, `None` when there is none.
    async fn admin_token_label(&self, token_hash: &str) -> Result<Option<String>>;

    /// Removes the token whose hash starts with `id` (exactly 12 lowercase hex characters, else
    /// [`StoreError::InvalidInput`]) and its dashboard sessions; `false` when there is none.
    /// [`StoreError::Conflict`] when it is the last admin token (nobody could log in any more) or
    /// when `id` matches several tokens. Atomic across collectors: two revocations at once never
    /// leave zero tokens.
    async fn revoke_admin_token(&self, id: &str) -> Result<bool>;

    // --- Dashboard sessions (see [`ui`]).

    /// Stores a session made from the admin token whose hash is `token_hash` (kept beside the session,
    /// never shown, so that revoking the token ends the session). [`StoreError::NotFound`] when no
    /// such token exists; [`StoreError::Conflict`] when `id_hash` is taken.
    async fn create_ui_session(&self, session: &UiSession, token_hash: &str) -> Result<()>;

    /// The session, or `None` when there is none, it has expired at `now` (`expires_at <= now`),
    /// or its admin token has been revoked.
    async fn ui_session(&self, id_hash: &str, now: DateTime<Utc>) -> Result<Option<UiSession>>;

    /// Ends a session (logout); `false` when there was none.
    async fn delete_ui_session(&self, id_hash: &str) -> Result<bool>;

    /// Removes the sessions expired at `now`, and the login links expired then; returns how many
    /// sessions.
    async fn purge_ui_sessions(&self, now: DateTime<Utc>) -> Result<u64>;

    /// Stores a one-time login link: `code_hash` (SHA-256 hex of the code the link carries) signs
    /// in with the admin token whose hash is `token_hash` until `expires_at`.
    /// [`StoreError::NotFound`] when no such token exists.
    async fn create_ui_login_link(
        &self,
        code_hash: &str,
        token_hash: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<()>;

    /// Redeems a login link: removes it and returns its admin token's hash; `None` when there is
    /// none, it was redeemed already, it has expired at `now`, or its token has been revoked. Of
    /// two redemptions at once (on any collectors), at most one gets the hash.
    async fn take_ui_login_link(
        &self,
        code_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>>;

    // --- Deletion requests (`beacon forget`, `POST /v1/forget`).

    /// Erases every security check and every error event of the server `server_id` (issue counts,
    /// per-day counts and the issue's servers adjusted; an issue left without events removed), its
    /// first/last-day rollup, and the dead letters whose payload contains the id; records the
    /// deletion in the log (`record`'s counts filled in) in the same transaction and returns it.
    /// The id is not recoverable from the database files afterwards (see each backend).
    async fn forget_server(&self, server_id: &str, record: ForgetRecord) -> Result<ForgetRecord>;

    /// Erases the raw trace events of the device whose `device_unique_id` hashes to `device_hash`
    /// and its device descriptions (sketch cells are aggregates and stay), after folding pending
    /// cells so every sketch keeps what it had; records the deletion like [`Store::forget_server`].
    async fn forget_device(&self, device_hash: &str, record: ForgetRecord) -> Result<ForgetRecord>;

    /// The deletion log, newest first.
    async fn forget_log(&self, limit: u32) -> Result<Vec<ForgetRecord>>;

    /// The newest dead letters first, optionally of one channel.
    async fn dead_letters(&self, channel: Option<&str>, limit: u32) -> Result<Vec<DeadLetter>>;

    /// Keeps only the newest `keep` dead letters of each channel (a ring); returns how many were
    /// removed, per channel (channels with none removed are left out).
    async fn trim_dead_letters(&self, keep: u64) -> Result<Vec<(String, u64)>>;

    // --- Alerts (see [`alerts`]): rules, episode state, the notification outbox.

    /// Stores a rule; [`StoreError::Conflict`] when its name is taken.
    async fn create_alert_rule(
        &self,
        rule: &alerts::NewAlertRuleRow,
    ) -> Result<alerts::StoredAlertRule>;

    /// Every rule, by id.
    async fn alert_rules(&self) -> Result<Vec<alerts::StoredAlertRule>>;

    async fn alert_rule(&self, id: i64) -> Result<Option<alerts::StoredAlertRule>>;

    /// Removes a rule with its episode state; its notifications not yet delivered are cancelled
    /// (history keeps them). `false` when there is none.
    async fn delete_alert_rule(&self, id: i64) -> Result<bool>;

    /// The episode state of every key a rule has seen, by key.
    async fn alert_states(&self, rule_id: i64) -> Result<Vec<alerts::AlertState>>;

    /// Applies one evaluation of a rule at `now`, atomically: each finding whose key is not firing
    /// opens the key's next episode and enqueues its notification (due at once); each firing key
    /// not among `findings` is resolved. Returns the notifications enqueued. A notification is
    /// unique per (rule, key, episode): of two collectors recording the same evaluation, one
    /// enqueues it. A rule removed meanwhile enqueues nothing.
    async fn record_alert_findings(
        &self,
        rule_id: i64,
        now: DateTime<Utc>,
        findings: &[alerts::Finding],
    ) -> Result<u64>;

    /// Enqueues a sample notification of a rule (episode 0, key `test`) leased to the caller
    /// until `lease_until`, counting its one attempt; [`StoreError::NotFound`] without the rule.
    async fn create_alert_test(
        &self,
        rule_id: i64,
        now: DateTime<Utc>,
        finding: &alerts::Finding,
        lease_until: DateTime<Utc>,
    ) -> Result<alerts::ClaimedNotification>;

    /// Leases up to `limit` pending notifications due at `now` whose lease (if any) has run out,
    /// until `lease_until`, counting an attempt on each, oldest due first. Two senders never
    /// lease the same notification at once.
    async fn claim_alert_notifications(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<alerts::ClaimedNotification>>;

    /// Records how the `attempts`-th attempt of a leased notification ended and ends its lease;
    /// `false` (nothing changed) when that is no longer its latest attempt or it is not pending.
    async fn finish_alert_notification(
        &self,
        id: i64,
        attempts: u32,
        at: DateTime<Utc>,
        outcome: &alerts::AttemptOutcome,
    ) -> Result<bool>;

    /// Notifications newest first, optionally of one rule.
    async fn alert_history(
        &self,
        rule_id: Option<i64>,
        limit: u32,
    ) -> Result<Vec<beacon_wire::alert::AlertDelivery>>;

    /// Removes the notifications no longer pending created before `before`, and the episode state
    /// of keys resolved before it; returns how many notifications. A key seen again afterwards
    /// starts over at episode 1 (its old notifications are gone with it).
    async fn purge_alert_history(&self, before: DateTime<Utc>) -> Result<u64>;

    /// The right to evaluate alert rules, held by one collector at a time (PostgreSQL: a session
    /// advisory lock); `None` while another collector holds it.
    async fn try_lock_alerts(&self) -> Result<Option<Box<dyn AlertLock>>>;

    // --- Retention (see [`retention`]): what each channel holds, and removing what expired.

    /// Per channel of [`retention::RetentionChannel::ALL`], in that order: its oldest day, rows and
    /// bytes on disk (`retention_days` left 0: the store does not know the policy).
    async fn retention_status(&self) -> Result<Vec<retention::RetentionStatus>>;

    /// Removes every row older than `policy` allows on `today` (see [`retention::RetentionPolicy::cutoff`])
    /// in small transactions, so that writes commit between them; never a row of the cutoff day or
    /// later. With `dry_run`, counts what it would remove and removes nothing. An issue goes with its
    /// last event. [`StoreError::Conflict`] when another collector is applying retention on the same
    /// database (one at a time).
    async fn apply_retention(
        &self,
        policy: &retention::RetentionPolicy,
        today: NaiveDate,
        dry_run: bool,
    ) -> Result<retention::RetentionRun>;
}
