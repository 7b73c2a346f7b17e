//! The PostgreSQL backend of [`beacon_store::Store`] (PostgreSQL 13 or newer).
//!
//! Several collectors may share one database: de-duplication is the `checks` primary key, migrations
//! run under an advisory lock, and every write is one transaction with `ON CONFLICT` upserts (rows
//! sorted by key, so concurrent batches lock in one order). A connection pool serves reads and writes;
//! TLS is used when the URL asks for it (`sslmode=require`, `verify-ca` or `verify-full`: rustls,
//! verified against the webpki roots plus `sslrootcert`); otherwise the connection is plain.

mod admin;
mod alerts;
mod errcells;
mod forget;
mod keys;
mod maintain;
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
use beacon_store::{
    AlertLock, EventRecord, IssueDayCount, Result, Store, StoreError, WriteOp, WriteOutcome,
};
use beacon_wire::admin::{
    AdminTokenInfo, ApiKeyInfo, DeadLetter, FleetDimension, ForgetRecord, IssueDetail, IssueFilter,
    IssueSummary, KeyInfo, ProjectInfo,
};
use beacon_wire::alert::AlertDelivery;
use beacon_wire::bulletin::Bulletin;
use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::sync::Arc;
use std::time::Duration;
use tokio_postgres::error::SqlState;

/// Longest wait for a pooled connection, a new connection, or one write transaction.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts of a write batch that lost a deadlock or serialization race to another collector.
const WRITE_ATTEMPTS: usize = 3;

/// The PostgreSQL store. Cheap to clone.
#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
}

pub use tokio_postgres::Config as PgConfig;

/// Parses a libpq-style URL. Beyond what `tokio-postgres` reads, it accepts `sslrootcert=PATH` (an
/// extra CA to trust, returned beside the config) and `sslmode=verify-ca` / `verify-full`, which
/// mean `require` here: with TLS, certificates are always verified.
pub fn parse_url(url: &str) -> Result<(PgConfig, Option<std::path::PathBuf>)> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    let mut root = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslrootcert", path)) => root = Some(std::path::PathBuf::from(path)),
            Some(("sslmode", "verify-ca" | "verify-full")) => {
                kept.push("sslmode=require".to_string())
            }
            _ => kept.push(pair.to_string()),
        }
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    let config = url
        .parse()
        .map_err(|e| StoreError::Config(format!("invalid postgres url: {e}")))?;
    Ok((config, root))
}

impl PgStore {
    /// Connects to `url` (see [`parse_url`]) and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Self> {
        let (config, root) = parse_url(url)?;
        Self::connect_with(config, root.as_deref()).await
    }

    /// Like [`connect`](Self::connect), from a parsed configuration and an optional extra CA file
    /// (PEM) to trust for TLS.
    pub async fn connect_with(
        mut config: PgConfig,
        root_cert: Option<&std::path::Path>,
    ) -> Result<Self> {
        config.connect_timeout(TIMEOUT);
        if config.get_application_name().is_none() {
            config.application_name("beacon");
        }
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require {
            // TLS only when the URL asks for it, verified against the webpki roots and sslrootcert.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let mut roots =
                rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            if let Some(path) = root_cert {
                use rustls::pki_types::pem::PemObject;
                let certs = rustls::pki_types::CertificateDer::pem_file_iter(path)
                    .and_then(|it| it.collect::<std::result::Result<Vec<_>, _>>())
                    .map_err(|e| {
                        StoreError::Config(format!("sslrootcert {}: {e}", path.display()))
                    })?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(StoreError::Config(format!(
                        "sslrootcert {}: no usable certificate",
                        path.display()
                    )));
                }
            }
            let tls_config = rustls::ClientConfig::builder()
                .with_root_certificates(roots)
                .with_no_client_auth();
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config);
            Manager::from_config(config, tls, manager_config)
        } else {
            config.ssl_mode(tokio_postgres::config::SslMode::Disable);
            Manager::from_config(config, tokio_postgres::NoTls, manager_config)
        };
        let pool = Pool::builder(manager)
            .max_size(16)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(TIMEOUT))
            .create_timeout(Some(TIMEOUT))
            .recycle_timeout(Some(TIMEOUT))
            .build()
            .map_err(|e| StoreError::Config(format!("postgres pool: {e}")))?;
        let store = PgStore { pool };
        let mut client = store.client().await?;
        migrations::apply(&mut client).await?;
        // Day partitions around today; every retention run makes them ahead too.
        retention::ensure_partitions(&client, Utc::now().date_naive()).await;
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object> {
        self.pool
            .get()
            .await
            .map_err(|e| StoreError::Unavailable(format!("postgres: {}", describe(&e))))
    }

    /// Whether a pooled connection's session is encrypted (`pg_stat_ssl`).
    pub async fn connection_uses_tls(&self) -> Result<bool> {
        let row = self
            .client()
            .await?
            .query_one(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
                &[],
            )
            .await
            .map_err(map_err)?;
        Ok(row.get(0))
    }
}

pub(crate) fn map_err(e: tokio_postgres::Error) -> StoreError {
    let text = describe(&e);
    match e.code() {
        Some(c) if *c == SqlState::UNIQUE_VIOLATION => StoreError::Conflict(text),
        // Data exceptions (22) and integrity violations (23) other than a taken key: this data will
        // never be stored, whoever retries it.
        Some(c) if c.code().starts_with("22") || c.code().starts_with("23") => {
            StoreError::Rejected(text)
        }
        _ => StoreError::Unavailable(format!("postgres: {text}")),
    }
}

/// An error and its causes, lower case, one line ("db error" alone says nothing).
fn describe(e: &dyn std::error::Error) -> String {
    let mut parts = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    parts.dedup();
    parts.join(": ")
}

fn is_retryable(e: &tokio_postgres::Error) -> bool {
    matches!(e.code(), Some(c) if *c == SqlState::T_R_DEADLOCK_DETECTED || *c == SqlState::T_R_SERIALIZATION_FAILURE)
}

impl PgStore {
    /// One attempt at a batch: `Ok(Err(e))` is a database error that may be retried.
    async fn try_write(
        &self,
        ops: &[WriteOp],
    ) -> Result<std::result::Result<Vec<WriteOutcome>, tokio_postgres::Error>> {
        let mut client = self.client().await?;
        Ok(async {
            let tx = client.transaction().await?;
            let mut out = vec![WriteOutcome::Accepted; ops.len()];
            let (mut check_at, mut checks, mut letters, mut events) =
                (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let mut traces = Vec::new();
            for (i, op) in ops.iter().enumerate() {
                match op {
                    WriteOp::Check(rec) => {
                        check_at.push(i);
                        checks.push(rec);
                    }
                    WriteOp::DeadLetter(d) => letters.push(d),
                    WriteOp::Event(e) => events.push((i, e)),
                    WriteOp::Traces(t) => traces.push(&**t),
                }
            }
            mobile::write_traces(&tx, &traces).await?;
            let records: Vec<&EventRecord> = events.iter().map(|(_, e)| &***e).collect();
            for ((i, _), outcome) in events
                .iter()
                .zip(sentry::write_events(&tx, &records).await?)
            {
                out[*i] = outcome;
            }
            admin::write_dead_letters(&tx, &letters).await?;
            for (i, outcome) in check_at
                .into_iter()
                .zip(security::write_checks(&tx, &checks).await?)
            {
                out[i] = outcome;
            }
            tx.commit().await?;
            Ok(out)
        }
        .await)
    }
}

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn ping(&self) -> Result<()> {
        self.client()
            .await?
            .execute("SELECT 1", &[])
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn write_batch(&self, ops: Arc<[WriteOp]>) -> Result<Vec<WriteOutcome>> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = tokio::time::timeout(TIMEOUT * 2, self.try_write(&ops))
                .await
                .map_err(|_| StoreError::Unavailable("postgres: write timed out".into()))??;
            match result {
                Ok(out) => return Ok(out),
                Err(e) if is_retryable(&e) && attempt < WRITE_ATTEMPTS => {
                    tracing::debug!(error = %e, attempt, "write batch lost a race; retrying");
                }
                Err(e) => return Err(map_err(e)),
            }
        }
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

    async fn maintain(&self) -> Result<bool> {
        maintain::run(self).await
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
        alerts::try_lock(self).await
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
