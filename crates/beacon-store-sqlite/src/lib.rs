//! The SQLite backend of [`beacon_store::Store`]: one file, WAL journal, `synchronous=FULL`.
//!
//! One connection writes (group-committed batches arrive from the collector's ingest service), one
//! reads for reports, one serves the ingest path's point reads, one checkpoints in the background;
//! WAL lets them run side by side. Each connection lives on a thread of its own ([`Conn`]) that
//! runs the work sent to it, so SQLite's memory stays on four threads: glibc's malloc, which SQLite
//! uses, gives each thread an arena and keeps what it freed there, and tokio's blocking pool would
//! spread it over a changing set of threads (up to eight arenas per core, each holding on to a
//! report's sort buffers: the collector's memory crept up for as long as it ran).

mod admin;
mod alerts;
pub mod backup;
mod forget;
mod keys;
mod migrations;
mod mobile;
mod retention;
mod security;
mod sentry;
mod ui;

use async_trait::async_trait;
use beacon_store::alerts::{
    AlertState, AttemptOutcome, ClaimedNotification, Finding, NewAlertRuleRow, StoredAlertRule,
};
use beacon_store::mobile::{PerfRow, PerfSelect, StoredTrace};
use beacon_store::security::{
    FleetCell, GrowthRaw, ReleaseHealth, ServerSnapshot, VersionDayCount,
};
use beacon_store::ui::UiSession;
use beacon_store::{AlertLock, IssueDayCount, Result, Store, StoreError, WriteOp, WriteOutcome};
use beacon_wire::admin::{
    AdminTokenInfo, ApiKeyInfo, DeadLetter, FleetDimension, ForgetRecord, IssueDetail, IssueFilter,
    IssueSummary, KeyInfo, ProjectInfo,
};
use beacon_wire::alert::AlertDelivery;
use beacon_wire::bulletin::Bulletin;
use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::Connection;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// A connection on a thread of its own, running one job at a time in the order sent. The thread
/// ends (closing the connection) once every handle is dropped.
#[derive(Clone)]
pub(crate) struct Conn {
    jobs: std::sync::mpsc::Sender<Job>,
}

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

impl Conn {
    fn spawn(name: &str, mut conn: Connection) -> Result<Conn> {
        let (jobs, queue) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name(format!("sqlite-{name}"))
            .spawn(move || {
                for job in queue {
                    job(&mut conn);
                }
            })
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot start the sqlite {name} thread: {e}"))
            })?;
        Ok(Conn { jobs })
    }
}

/// The SQLite store. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    writer: Conn,
    /// Reports and listings: they may read for a while.
    reader: Conn,
    /// Short point reads on the ingest path (credentials, bulletins), which must never wait behind a
    /// report on `reader`.
    lookup: Conn,
    /// Sketch cells of committed trace events not yet in `perf_sketches` (see `mobile::Pending`).
    pending: Arc<Mutex<mobile::Pending>>,
    /// Keeps the checkpoint thread running while any clone of the store lives.
    _alive: Arc<()>,
    /// A shared `flock` on the database file while the store is open: `beacon restore` takes it
    /// exclusively, so it never replaces a store in use and no store opens one being replaced.
    _in_use: Arc<std::fs::File>,
}

impl SqliteStore {
    /// Opens (creating when missing) the database file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self> {
        let mut writer = connect(path)?;
        let in_use = backup::lock_shared(path)?;
        retention::ensure_incremental_vacuum(&writer)?;
        migrations::apply(&mut writer)?;
        mobile::recover(&mut writer)?;
        let reader = connect(path)?;
        let lookup = connect(path)?;
        // Point reads of small tables need no large page cache.
        lookup
            .execute_batch("PRAGMA cache_size=-2048")
            .map_err(map_err)?;
        let checkpointer = connect(path)?;
        // Copying WAL frames needs no page cache of its own.
        checkpointer
            .execute_batch("PRAGMA cache_size=-2048")
            .map_err(map_err)?;
        let alive = Arc::new(());
        let weak = Arc::downgrade(&alive);
        std::thread::Builder::new()
            .name("sqlite-checkpoint".into())
            .spawn(move || checkpoint_loop(checkpointer, weak))
            .map_err(|e| {
                StoreError::Unavailable(format!("cannot start the checkpoint thread: {e}"))
            })?;
        Ok(Self {
            writer: Conn::spawn("writer", writer)?,
            reader: Conn::spawn("reader", reader)?,
            lookup: Conn::spawn("lookup", lookup)?,
            pending: Arc::default(),
            _alive: alive,
            _in_use: Arc::new(in_use),
        })
    }
}

fn connect(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path).map_err(|e| {
        StoreError::Unavailable(format!(
            "cannot open sqlite database {}: {e}",
            path.display()
        ))
    })?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(map_err)?;
    // WAL: readers never block the writer. FULL: a committed transaction survives power loss.
    let mode: String = conn
        .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
        .map_err(map_err)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StoreError::Unavailable(format!(
            "sqlite refused WAL journal mode (got {mode})"
        )));
    }
    // No checkpoints in the commit path: a background thread runs them (see `checkpoint_loop`).
    conn.execute_batch(
        "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA cache_size=-16384; \
         PRAGMA wal_autocheckpoint=0; PRAGMA journal_size_limit=67108864;",
    )
    .map_err(map_err)?;
    Ok(conn)
}

/// Copies the WAL into the database file once a second, beside the writer rather than inside its
/// commits. Stops once every handle to the store is dropped, or on error.
fn checkpoint_loop(conn: Connection, alive: std::sync::Weak<()>) {
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
        if alive.strong_count() == 0 {
            // Every handle to the store is gone: checkpoint once more and stop.
            let _ = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
            return;
        }
        // PASSIVE never blocks the writer or readers; frames it cannot copy now wait for the next round.
        match conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(0)) {
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "sqlite checkpoint failed; checkpoint thread stops");
                return;
            }
        }
    }
}

pub(crate) fn poisoned() -> StoreError {
    StoreError::Unavailable("a sqlite lock poisoned by an earlier panic".into())
}

pub(crate) fn map_err(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict(e.to_string())
        }
        rusqlite::Error::FromSqlConversionFailure(..) | rusqlite::Error::InvalidColumnType(..) => {
            StoreError::Corrupt(e.to_string())
        }
        _ => StoreError::Unavailable(format!("sqlite: {e}")),
    }
}

/// Runs `f` on the connection's thread and waits for its answer. A panic in `f` is caught there (the
/// connection's open transaction, if any, is rolled back as it unwinds) and answered as an error;
/// the connection serves the next job.
async fn run<T: Send + 'static>(
    conn: &Conn,
    f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
) -> Result<T> {
    let (reply, answer) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move |c: &mut Connection| {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(c)))
            .unwrap_or_else(|_| {
                Err(StoreError::Unavailable(
                    "a sqlite job panicked; the log has its message".into(),
                ))
            });
        // The caller may have gone (its request was cancelled): nobody to tell.
        let _ = reply.send(result);
    });
    conn.jobs
        .send(job)
        .map_err(|_| StoreError::Unavailable("the sqlite connection thread stopped".into()))?;
    answer
        .await
        .map_err(|_| StoreError::Unavailable("the sqlite connection thread stopped".into()))?
}

fn day_num(d: NaiveDate) -> i64 {
    (d - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch")).num_days()
}

fn day_from(n: i64) -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch") + chrono::Days::new(n.max(0) as u64)
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn time_from(ms: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("timestamp {ms} out of range")))
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn ping(&self) -> Result<()> {
        run(&self.reader, |c| {
            c.query_row("SELECT 1", [], |_| Ok(())).map_err(map_err)
        })
        .await
    }

    async fn write_batch(&self, ops: Arc<[WriteOp]>) -> Result<Vec<WriteOutcome>> {
        let pending = self.pending.clone();
        run(&self.writer, move |conn| {
            let tx = conn.transaction().map_err(map_err)?;
            let mut out = vec![WriteOutcome::Accepted; ops.len()];
            let (mut check_at, mut checks) = (Vec::new(), Vec::new());
            let (mut event_at, mut events) = (Vec::new(), Vec::new());
            let mut traces = Vec::new();
            for (i, op) in ops.iter().enumerate() {
                match op {
                    WriteOp::Check(rec) => {
                        check_at.push(i);
                        checks.push(rec);
                    }
                    WriteOp::DeadLetter(d) => out[i] = admin::write_dead_letter(&tx, d)?,
                    WriteOp::Event(e) => {
                        event_at.push(i);
                        events.push(&**e);
                    }
                    WriteOp::Traces(t) => traces.push(&**t),
                }
            }
            let written = mobile::write_traces(&tx, &traces)?;
            for (i, outcome) in check_at
                .into_iter()
                .zip(security::write_checks(&tx, &checks)?)
            {
                out[i] = outcome;
            }
            for (i, outcome) in event_at
                .into_iter()
                .zip(sentry::write_events(&tx, &events)?)
            {
                out[i] = outcome;
            }
            tx.commit().map_err(map_err)?;
            if let Some(max_rowid) = written {
                let due = {
                    let mut p = pending.lock().map_err(|_| poisoned())?;
                    p.absorb(&traces, max_rowid);
                    p.due()
                };
                if due {
                    // Committed already: a failed fold only delays it (the events stay pending).
                    if let Err(e) = mobile::fold_pending(conn, &pending) {
                        tracing::warn!(error = %e, "folding trace sketches failed; retrying later");
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn count_checks(&self) -> Result<u64> {
        security::count_checks(self).await
    }

    async fn insert_bulletin(&self, b: &Bulletin) -> Result<()> {
        security::insert_bulletin(self, b).await
    }

    async fn bulletins(&self) -> Result<Vec<Bulletin>> {
        security::bulletins(self).await
    }

    async fn bulletin(&self, id: &str) -> Result<Option<Bulletin>> {
        security::bulletin(self, id).await
    }

    async fn retract_bulletin(&self, id: &str, at: DateTime<Utc>) -> Result<Bulletin> {
        security::retract_bulletin(self, id, at).await
    }

    async fn add_admin_token(
        &self,
        token_hash: &str,
        label: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        admin::add_admin_token(self, token_hash, label, at).await
    }

    async fn admin_token_count(&self) -> Result<u64> {
        admin::admin_token_count(self).await
    }

    async fn admin_token_valid(&self, token_hash: &str) -> Result<bool> {
        admin::admin_token_valid(self, token_hash).await
    }

    async fn admin_tokens(&self) -> Result<Vec<AdminTokenInfo>> {
        admin::admin_tokens(self).await
    }

    async fn admin_token_label(&self, token_hash: &str) -> Result<Option<String>> {
        admin::admin_token_label(self, token_hash).await
    }

    async fn revoke_admin_token(&self, id: &str) -> Result<bool> {
        admin::revoke_admin_token(self, id).await
    }

    async fn create_ui_session(&self, session: &UiSession, token_hash: &str) -> Result<()> {
        ui::create_ui_session(self, session, token_hash).await
    }

    async fn ui_session(&self, id_hash: &str, now: DateTime<Utc>) -> Result<Option<UiSession>> {
        ui::ui_session(self, id_hash, now).await
    }

    async fn delete_ui_session(&self, id_hash: &str) -> Result<bool> {
        ui::delete_ui_session(self, id_hash).await
    }

    async fn purge_ui_sessions(&self, now: DateTime<Utc>) -> Result<u64> {
        ui::purge_ui_sessions(self, now).await
    }

    async fn create_ui_login_link(
        &self,
        code_hash: &str,
        token_hash: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        ui::create_ui_login_link(self, code_hash, token_hash, expires_at).await
    }

    async fn take_ui_login_link(
        &self,
        code_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>> {
        ui::take_ui_login_link(self, code_hash, now).await
    }

    async fn latest_per_server(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        include_test: bool,
    ) -> Result<Vec<ServerSnapshot>> {
        security::latest_per_server(self, from, to, include_test).await
    }

    async fn fleet_cells(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        by: FleetDimension,
        include_test: bool,
    ) -> Result<Vec<FleetCell>> {
        security::fleet_cells(self, from, to, by, include_test).await
    }

    async fn version_day_counts(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        include_test: bool,
    ) -> Result<Vec<VersionDayCount>> {
        security::version_day_counts(self, from, to, include_test).await
    }

    async fn growth_raw(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        last_from: NaiveDate,
        include_test: bool,
    ) -> Result<GrowthRaw> {
        security::growth_raw(self, from, to, last_from, include_test).await
    }

    async fn release_health(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        include_test: bool,
    ) -> Result<Vec<ReleaseHealth>> {
        security::release_health(self, from, to, include_test).await
    }

    async fn trim_dead_letters(&self, keep: u64) -> Result<Vec<(String, u64)>> {
        admin::trim_dead_letters(self, keep).await
    }

    async fn forget_server(&self, server_id: &str, record: ForgetRecord) -> Result<ForgetRecord> {
        forget::forget_server(self, server_id, record).await
    }

    async fn forget_device(&self, device_hash: &str, record: ForgetRecord) -> Result<ForgetRecord> {
        // Pending cells first: every sketch keeps the events it had.
        self.compact_perf().await?;
        forget::forget_device(self, device_hash, record).await
    }

    async fn forget_log(&self, limit: u32) -> Result<Vec<ForgetRecord>> {
        forget::forget_log(self, limit).await
    }

    async fn dead_letters(&self, channel: Option<&str>, limit: u32) -> Result<Vec<DeadLetter>> {
        admin::dead_letters(self, channel, limit).await
    }

    async fn create_project(
        &self,
        name: &str,
        public_key: &str,
        at: DateTime<Utc>,
    ) -> Result<ProjectInfo> {
        sentry::create_project(self, name, public_key, at).await
    }

    async fn projects(&self) -> Result<Vec<ProjectInfo>> {
        sentry::projects(self).await
    }

    async fn project_key(&self, public_key: &str) -> Result<Option<KeyInfo>> {
        keys::project_key(self, public_key).await
    }

    async fn update_key(
        &self,
        public_key: &str,
        enabled: Option<bool>,
        rate_limit: Option<u32>,
    ) -> Result<KeyInfo> {
        keys::update_key(self, public_key, enabled, rate_limit).await
    }

    async fn issues(&self, f: &IssueFilter) -> Result<Vec<IssueSummary>> {
        sentry::issues(self, f).await
    }

    async fn issue(&self, id: i64) -> Result<Option<IssueDetail>> {
        sentry::issue(self, id).await
    }

    async fn issue_day_counts(
        &self,
        ids: &[i64],
        from: NaiveDate,
        to: NaiveDate,
    ) -> Result<Vec<IssueDayCount>> {
        sentry::issue_day_counts(self, ids, from, to).await
    }

    async fn secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>> {
        keys::secret(self, name, candidate).await
    }

    async fn create_api_key(
        &self,
        name: &str,
        key_hash: &str,
        prefix: &str,
        at: DateTime<Utc>,
    ) -> Result<ApiKeyInfo> {
        keys::create_api_key(self, name, key_hash, prefix, at).await
    }

    async fn api_keys(&self) -> Result<Vec<ApiKeyInfo>> {
        keys::api_keys(self).await
    }

    async fn revoke_api_key(&self, name: &str, at: DateTime<Utc>) -> Result<ApiKeyInfo> {
        keys::revoke_api_key(self, name, at).await
    }

    async fn api_key_valid(&self, key_hash: &str) -> Result<bool> {
        keys::api_key_valid(self, key_hash).await
    }

    async fn perf_rows(&self, select: &PerfSelect) -> Result<Vec<PerfRow>> {
        mobile::perf_rows(self, select).await
    }

    async fn compact_perf(&self) -> Result<u64> {
        mobile::compact_perf(self).await
    }

    async fn count_trace_events(&self) -> Result<u64> {
        mobile::count_trace_events(self).await
    }

    async fn trace_events(&self, limit: u32) -> Result<Vec<StoredTrace>> {
        mobile::trace_events(self, limit).await
    }

    // --- Retention.

    async fn issue_event_counts(
        &self,
        ids: &[i64],
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(i64, u64)>> {
        alerts::issue_event_counts(self, ids, from, to).await
    }

    async fn create_alert_rule(&self, rule: &NewAlertRuleRow) -> Result<StoredAlertRule> {
        alerts::create_rule(self, rule).await
    }

    async fn alert_rules(&self) -> Result<Vec<StoredAlertRule>> {
        alerts::rules(self).await
    }

    async fn alert_rule(&self, id: i64) -> Result<Option<StoredAlertRule>> {
        alerts::rule(self, id).await
    }

    async fn delete_alert_rule(&self, id: i64) -> Result<bool> {
        alerts::delete_rule(self, id).await
    }

    async fn alert_states(&self, rule_id: i64) -> Result<Vec<AlertState>> {
        alerts::states(self, rule_id).await
    }

    async fn record_alert_findings(
        &self,
        rule_id: i64,
        now: DateTime<Utc>,
        findings: &[Finding],
    ) -> Result<u64> {
        alerts::record_findings(self, rule_id, now, findings).await
    }

    async fn create_alert_test(
        &self,
        rule_id: i64,
        now: DateTime<Utc>,
        finding: &Finding,
        lease_until: DateTime<Utc>,
    ) -> Result<ClaimedNotification> {
        alerts::create_test(self, rule_id, now, finding, lease_until).await
    }

    async fn claim_alert_notifications(
        &self,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ClaimedNotification>> {
        alerts::claim(self, now, lease_until, limit).await
    }

    async fn finish_alert_notification(
        &self,
        id: i64,
        attempts: u32,
        at: DateTime<Utc>,
        outcome: &AttemptOutcome,
    ) -> Result<bool> {
        alerts::finish(self, id, attempts, at, outcome).await
    }

    async fn alert_history(&self, rule_id: Option<i64>, limit: u32) -> Result<Vec<AlertDelivery>> {
        alerts::history(self, rule_id, limit).await
    }

    async fn purge_alert_history(&self, before: DateTime<Utc>) -> Result<u64> {
        alerts::purge(self, before).await
    }

    async fn try_lock_alerts(&self) -> Result<Option<Box<dyn AlertLock>>> {
        Ok(Some(Box::new(alerts::NoLock)))
    }

    async fn retention_status(&self) -> Result<Vec<beacon_store::retention::RetentionStatus>> {
        retention::status(self).await
    }

    async fn apply_retention(
        &self,
        policy: &beacon_store::retention::RetentionPolicy,
        today: NaiveDate,
        dry_run: bool,
    ) -> Result<beacon_store::retention::RetentionRun> {
        retention::apply(self, policy, today, dry_run).await
    }
}
