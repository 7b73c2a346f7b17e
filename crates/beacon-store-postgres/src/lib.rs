//! The PostgreSQL backend of [`beacon_store::Store`] (PostgreSQL 13 or newer).
//!
//! Several collectors may share one database: de-duplication is the `checks` primary key, migrations
//! run under an advisory lock, and every write is one transaction with `ON CONFLICT` upserts (rows
//! sorted by key, so concurrent batches lock in one order). A connection pool serves reads and writes;
//! TLS is used when the URL asks for it (`sslmode=require`, `verify-ca` or `verify-full`: rustls,
//! verified against the webpki roots plus `sslrootcert`); otherwise the connection is plain.

mod migrations;
mod perf;

use async_trait::async_trait;
use beacon_store::EventRecord;
use beacon_store::perf::{PerfRow, PerfSelect, StoredTrace};
use beacon_store::{
    CheckRecord, DayCount, GrowthRaw, NewDeadLetter, Result, ServerSnapshot, Store, StoreError,
    VersionDayCount, WriteOp, WriteOutcome,
};
use beacon_wire::admin::{
    ApiKeyInfo, CountBy, DeadLetter, IssueDetail, IssueFilter, IssueSort, IssueSummary, KeyInfo,
    ProjectInfo,
};
use beacon_wire::bulletin::{Bulletin, Severity};
use beacon_wire::sentry::Level;
use chrono::{DateTime, NaiveDate, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use std::collections::HashMap;
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
        .map_err(|e| StoreError::Invalid(format!("invalid postgres url: {e}")))?;
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
                        StoreError::Invalid(format!("sslrootcert {}: {e}", path.display()))
                    })?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(StoreError::Invalid(format!(
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
            .map_err(|e| StoreError::Invalid(format!("postgres pool: {e}")))?;
        let store = PgStore { pool };
        let mut client = store.client().await?;
        migrations::apply(&mut client).await?;
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

const INSERT_CHECKS: &str = "INSERT INTO checks (day, server_id, received_at, version, build, \
    enterprise, os, db, db_version, teams, users, activated_users, unit_tests, last_check_ms) \
    SELECT * FROM unnest($1::date[], $2::text[], $3::timestamptz[], $4::text[], $5::text[], \
    $6::bool[], $7::text[], $8::text[], $9::text[], $10::int8[], $11::int8[], $12::int8[], \
    $13::bool[], $14::int8[]) \
    ON CONFLICT (day, server_id) DO UPDATE SET received_at = excluded.received_at, \
    version = excluded.version, build = excluded.build, enterprise = excluded.enterprise, \
    os = excluded.os, db = excluded.db, db_version = excluded.db_version, teams = excluded.teams, \
    users = excluded.users, activated_users = excluded.activated_users, \
    unit_tests = excluded.unit_tests, last_check_ms = excluded.last_check_ms, \
    checks_that_day = checks.checks_that_day + 1 \
    RETURNING day, server_id, checks_that_day";

/// Upserts checks. PostgreSQL refuses to touch one row twice in one statement, so repeats of a key
/// within the batch go into later statements ("rounds"), which keeps them in order.
async fn write_checks(
    tx: &tokio_postgres::Transaction<'_>,
    recs: &[&CheckRecord],
) -> std::result::Result<Vec<WriteOutcome>, tokio_postgres::Error> {
    let mut out = vec![WriteOutcome::Accepted; recs.len()];
    let mut seen: HashMap<(NaiveDate, &str), usize> = HashMap::with_capacity(recs.len());
    let mut rounds: Vec<Vec<usize>> = Vec::new();
    for (i, r) in recs.iter().enumerate() {
        let n = seen
            .entry((r.day(), r.check.server_id.as_str()))
            .or_insert(0);
        if rounds.len() <= *n {
            rounds.push(Vec::new());
        }
        rounds[*n].push(i);
        *n += 1;
    }
    for mut round in rounds {
        // One lock order for every collector: no deadlocks between concurrent batches.
        round.sort_by(|a, b| {
            (recs[*a].day(), &recs[*a].check.server_id)
                .cmp(&(recs[*b].day(), &recs[*b].check.server_id))
        });
        let rows: Vec<&CheckRecord> = round.iter().map(|i| recs[*i]).collect();
        let col =
            |f: &dyn Fn(&CheckRecord) -> Option<i64>| rows.iter().map(|r| f(r)).collect::<Vec<_>>();
        let days: Vec<NaiveDate> = rows.iter().map(|r| r.day()).collect();
        let ids: Vec<&str> = rows.iter().map(|r| r.check.server_id.as_str()).collect();
        let received: Vec<DateTime<Utc>> = rows.iter().map(|r| r.received_at).collect();
        let versions: Vec<String> = rows.iter().map(|r| r.check.version.to_string()).collect();
        let builds: Vec<Option<&str>> = rows.iter().map(|r| r.check.build.as_deref()).collect();
        let enterprise: Vec<bool> = rows.iter().map(|r| r.check.enterprise).collect();
        let os: Vec<&str> = rows.iter().map(|r| r.check.os.as_str()).collect();
        let db: Vec<&str> = rows.iter().map(|r| r.check.db.as_str()).collect();
        let dbv: Vec<Option<&str>> = rows.iter().map(|r| r.check.db_version.as_deref()).collect();
        let teams = col(&|r| r.check.teams);
        let users = col(&|r| r.check.users);
        let activated = col(&|r| r.check.activated_users);
        let ut: Vec<bool> = rows.iter().map(|r| r.check.unit_tests).collect();
        let lc = col(&|r| r.check.last_check_ms);
        let returned = tx
            .query(
                INSERT_CHECKS,
                &[
                    &days,
                    &ids,
                    &received,
                    &versions,
                    &builds,
                    &enterprise,
                    &os,
                    &db,
                    &dbv,
                    &teams,
                    &users,
                    &activated,
                    &ut,
                    &lc,
                ],
            )
            .await?;
        let counts: HashMap<(NaiveDate, String), i32> = returned
            .iter()
            .map(|row| ((row.get(0), row.get(1)), row.get(2)))
            .collect();
        for i in round {
            let key = (recs[i].day(), recs[i].check.server_id.clone());
            out[i] = match counts.get(&key) {
                Some(1) => WriteOutcome::Accepted,
                _ => WriteOutcome::Duplicate,
            };
        }
    }
    Ok(out)
}

async fn write_dead_letters(
    tx: &tokio_postgres::Transaction<'_>,
    letters: &[&NewDeadLetter],
) -> std::result::Result<(), tokio_postgres::Error> {
    if letters.is_empty() {
        return Ok(());
    }
    let at: Vec<DateTime<Utc>> = letters.iter().map(|d| d.received_at).collect();
    let channel: Vec<&str> = letters.iter().map(|d| d.channel.as_str()).collect();
    let reason: Vec<&str> = letters.iter().map(|d| d.reason.as_str()).collect();
    let payload: Vec<&str> = letters.iter().map(|d| d.payload.as_str()).collect();
    // WITH ORDINALITY + ORDER BY: ids follow the order given.
    tx.execute(
        "INSERT INTO dead_letters (received_at, channel, reason, payload) \
         SELECT a, c, r, p FROM unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[]) \
         WITH ORDINALITY AS t(a, c, r, p, n) ORDER BY n",
        &[&at, &channel, &reason, &payload],
    )
    .await?;
    Ok(())
}

async fn write_event(
    tx: &tokio_postgres::Transaction<'_>,
    r: &EventRecord,
) -> std::result::Result<WriteOutcome, tokio_postgres::Error> {
    let e = &r.event;
    let level = e.level.as_str();
    // The event row first: a repeat (same project and event id) changes nothing.
    let payload = &r.event_json;
    let inserted = tx
        .execute(
            "INSERT INTO events (project_id, event_id, issue_id, received_at, timestamp, level, release, \
             environment, server_id, payload) VALUES ($1, $2, 0, $3, $4, $5, $6, $7, $8, $9) \
             ON CONFLICT (project_id, event_id) DO NOTHING",
            &[&r.project_id, &e.event_id, &r.received_at, &e.timestamp, &level, &e.release, &e.environment, &r.server_id, &payload],
        )
        .await?;
    if inserted == 0 {
        return Ok(WriteOutcome::Duplicate);
    }
    let issue_id: i64 = tx
        .query_one(
            "INSERT INTO issues (project_id, group_hash, title, culprit, level, first_seen, last_seen, count) \
             VALUES ($1, $2, $3, $4, $5, $6, $6, 1) ON CONFLICT (project_id, group_hash) DO UPDATE SET \
             last_seen = greatest(issues.last_seen, excluded.last_seen), \
             first_seen = least(issues.first_seen, excluded.first_seen), \
             count = issues.count + 1, level = excluded.level RETURNING id",
            &[&r.project_id, &r.group_hash, &r.title, &r.culprit, &level, &r.received_at],
        )
        .await?
        .get(0);
    tx.execute(
        "UPDATE events SET issue_id = $3 WHERE project_id = $1 AND event_id = $2",
        &[&r.project_id, &e.event_id, &issue_id],
    )
    .await?;
    tx.execute(
        "INSERT INTO issue_counts (issue_id, day, release, environment, count) VALUES ($1, $2, $3, $4, 1) \
         ON CONFLICT (issue_id, day, release, environment) DO UPDATE SET count = issue_counts.count + 1",
        &[&issue_id, &r.received_at.date_naive(), &e.release.as_deref().unwrap_or(""), &e.environment.as_deref().unwrap_or("")],
    )
    .await?;
    if let Some(server) = &r.server_id {
        tx.execute(
            "INSERT INTO issue_servers (issue_id, server_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&issue_id, server],
        )
        .await?;
    }
    Ok(WriteOutcome::Accepted)
}

fn key_from_row(r: &tokio_postgres::Row) -> KeyInfo {
    KeyInfo {
        public_key: r.get(0),
        project_id: r.get(1),
        enabled: r.get(2),
        rate_limit_per_minute: r.get::<_, Option<i32>>(3).map(|v| v as u32),
        dsn: None,
    }
}

const ISSUE_COLUMNS: &str = "i.id, i.project_id, i.title, i.culprit, i.level, i.first_seen, i.last_seen, i.count, \
     (SELECT count(*) FROM issue_servers s WHERE s.issue_id = i.id)";

fn issue_from_row(r: &tokio_postgres::Row) -> Result<IssueSummary> {
    let level: String = r.get(4);
    Ok(IssueSummary {
        id: r.get(0),
        project_id: r.get(1),
        title: r.get(2),
        culprit: r.get(3),
        level: serde_json::from_value(serde_json::Value::String(level))
            .map_err(|e| StoreError::Invalid(format!("issue level: {e}")))?,
        first_seen: r.get(5),
        last_seen: r.get(6),
        count: r.get::<_, i64>(7) as u64,
        servers: r.get::<_, i64>(8) as u64,
    })
}

fn bulletin_from_row(row: &tokio_postgres::Row) -> Result<Bulletin> {
    let severity: String = row.get(2);
    Ok(Bulletin {
        id: row.get(0),
        title: row.get(1),
        severity: severity
            .parse::<Severity>()
            .map_err(|e| StoreError::Invalid(format!("bulletin severity: {e}")))?,
        affected: row.get(3),
        fixed_in: row.get(4),
        body: row.get(5),
        published_at: row.get(6),
        retracted_at: row.get(7),
    })
}

const BULLETIN_COLUMNS: &str =
    "id, title, severity, affected, fixed_in, body, published_at, retracted_at";

fn day_counts(rows: Vec<tokio_postgres::Row>) -> Vec<DayCount> {
    rows.iter()
        .map(|r| DayCount {
            day: r.get(0),
            count: r.get::<_, i64>(1) as u64,
        })
        .collect()
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
            perf::write_traces(&tx, &traces).await?;
            // Events sorted by group, so concurrent batches lock issue rows in one order.
            events.sort_by(|a, b| {
                (a.1.project_id, &a.1.group_hash).cmp(&(b.1.project_id, &b.1.group_hash))
            });
            for (i, e) in events {
                out[i] = write_event(&tx, e).await?;
            }
            write_dead_letters(&tx, &letters).await?;
            for (i, outcome) in check_at.into_iter().zip(write_checks(&tx, &checks).await?) {
                out[i] = outcome;
            }
            tx.commit().await?;
            Ok(out)
        }
        .await)
    }

    /// Brings the `servers` rollup up to date with `checks` (see the SQLite backend: same rule).
    async fn roll_up_servers(&self) -> Result<()> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_err)?;
        let watermark: Option<i64> = tx
            .query_opt(
                "SELECT value FROM meta WHERE key = 'servers_rollup_day'",
                &[],
            )
            .await
            .map_err(map_err)?
            .map(|r| r.get(0));
        let max_day: Option<NaiveDate> = tx
            .query_one("SELECT max(day) FROM checks", &[])
            .await
            .map_err(map_err)?
            .get(0);
        let Some(max_day) = max_day else {
            return Ok(());
        };
        let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch");
        let from = watermark
            .map(|w| epoch + chrono::Days::new(w.max(1) as u64 - 1))
            .unwrap_or(epoch);
        tx.execute(
            "INSERT INTO servers (server_id, first_day, last_day, unit_tests) \
             SELECT server_id, min(day), max(day), false FROM checks WHERE day >= $1 \
             GROUP BY server_id ORDER BY server_id \
             ON CONFLICT (server_id) DO UPDATE SET \
             first_day = least(servers.first_day, excluded.first_day), \
             last_day = greatest(servers.last_day, excluded.last_day)",
            &[&from],
        )
        .await
        .map_err(map_err)?;
        tx.execute(
            "UPDATE servers s SET unit_tests = c.unit_tests FROM checks c \
             WHERE c.day = s.last_day AND c.server_id = s.server_id AND s.last_day >= $1",
            &[&from],
        )
        .await
        .map_err(map_err)?;
        let max_num = (max_day - epoch).num_days();
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('servers_rollup_day', $1) \
             ON CONFLICT (key) DO UPDATE SET value = greatest(meta.value, excluded.value)",
            &[&max_num],
        )
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)
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
        let row = self
            .client()
            .await?
            .query_one("SELECT count(*) FROM checks", &[])
            .await
            .map_err(map_err)?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn insert_bulletin(&self, b: &Bulletin) -> Result<()> {
        self.client()
            .await?
            .execute(
                "INSERT INTO bulletins (id, title, severity, affected, fixed_in, body, published_at, retracted_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[&b.id, &b.title, &b.severity.as_str(), &b.affected, &b.fixed_in, &b.body, &b.published_at, &b.retracted_at],
            )
            .await
            .map_err(|e| match map_err(e) {
                StoreError::Conflict(_) => StoreError::Conflict(format!("bulletin {} exists", b.id)),
                other => other,
            })?;
        Ok(())
    }

    async fn bulletins(&self) -> Result<Vec<Bulletin>> {
        self.client()
            .await?
            .query(
                &format!("SELECT {BULLETIN_COLUMNS} FROM bulletins ORDER BY published_at, id"),
                &[],
            )
            .await
            .map_err(map_err)?
            .iter()
            .map(bulletin_from_row)
            .collect()
    }

    async fn bulletin(&self, id: &str) -> Result<Option<Bulletin>> {
        self.client()
            .await?
            .query_opt(
                &format!("SELECT {BULLETIN_COLUMNS} FROM bulletins WHERE id = $1"),
                &[&id],
            )
            .await
            .map_err(map_err)?
            .as_ref()
            .map(bulletin_from_row)
            .transpose()
    }

    async fn retract_bulletin(&self, id: &str, at: DateTime<Utc>) -> Result<Bulletin> {
        let row = self
            .client()
            .await?
            .query_opt(
                &format!(
                    "UPDATE bulletins SET retracted_at = coalesce(retracted_at, $2) WHERE id = $1 \
                     RETURNING {BULLETIN_COLUMNS}"
                ),
                &[&id, &at],
            )
            .await
            .map_err(map_err)?
            .ok_or_else(|| StoreError::NotFound(format!("bulletin {id}")))?;
        bulletin_from_row(&row)
    }

    async fn add_admin_token(
        &self,
        token_hash: &str,
        label: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        self.client()
            .await?
            .execute(
                "INSERT INTO admin_tokens (token_hash, label, created_at) VALUES ($1, $2, $3)",
                &[&token_hash, &label, &at],
            )
            .await
            .map_err(map_err)?;
        Ok(())
    }

    async fn admin_token_count(&self) -> Result<u64> {
        let row = self
            .client()
            .await?
            .query_one("SELECT count(*) FROM admin_tokens", &[])
            .await
            .map_err(map_err)?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn admin_token_valid(&self, token_hash: &str) -> Result<bool> {
        Ok(self
            .client()
            .await?
            .query_opt(
                "SELECT 1 FROM admin_tokens WHERE token_hash = $1",
                &[&token_hash],
            )
            .await
            .map_err(map_err)?
            .is_some())
    }

    async fn latest_per_server(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        include_test: bool,
    ) -> Result<Vec<ServerSnapshot>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT * FROM (SELECT DISTINCT ON (server_id) server_id, day, version, enterprise, os, db, \
                 db_version, teams, users, activated_users, unit_tests FROM checks \
                 WHERE day BETWEEN $1 AND $2 ORDER BY server_id, day DESC) latest \
                 WHERE $3 OR NOT unit_tests ORDER BY server_id",
                &[&from, &to, &include_test],
            )
            .await
            .map_err(map_err)?;
        Ok(rows
            .iter()
            .map(|r| ServerSnapshot {
                server_id: r.get(0),
                day: r.get(1),
                version: r.get(2),
                enterprise: r.get(3),
                os: r.get(4),
                db: r.get(5),
                db_version: r.get(6),
                teams: r.get(7),
                users: r.get(8),
                activated_users: r.get(9),
                unit_tests: r.get(10),
            })
            .collect())
    }

    async fn version_day_counts(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        include_test: bool,
    ) -> Result<Vec<VersionDayCount>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT day, version, count(*), coalesce(sum(activated_users), 0)::int8 FROM checks \
                 WHERE day BETWEEN $1 AND $2 AND ($3 OR NOT unit_tests) \
                 GROUP BY day, version ORDER BY day, version",
                &[&from, &to, &include_test],
            )
            .await
            .map_err(map_err)?;
        Ok(rows
            .iter()
            .map(|r| VersionDayCount {
                day: r.get(0),
                version: r.get(1),
                servers: r.get::<_, i64>(2) as u64,
                activated_users: r.get(3),
            })
            .collect())
    }

    async fn growth_raw(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        last_from: NaiveDate,
        include_test: bool,
    ) -> Result<GrowthRaw> {
        self.roll_up_servers().await?;
        let client = self.client().await?;
        let q = |sql: &'static str, a: NaiveDate| {
            let client = &client;
            async move {
                client
                    .query(sql, &[&a, &to, &include_test])
                    .await
                    .map(day_counts)
                    .map_err(map_err)
            }
        };
        Ok(GrowthRaw {
            servers: q(
                "SELECT day, count(*) FROM checks WHERE day BETWEEN $1 AND $2 AND ($3 OR NOT unit_tests) GROUP BY day",
                from,
            )
            .await?,
            first_seen: q(
                "SELECT first_day, count(*) FROM servers WHERE first_day BETWEEN $1 AND $2 AND ($3 OR NOT unit_tests) GROUP BY first_day",
                from,
            )
            .await?,
            last_seen: q(
                "SELECT last_day, count(*) FROM servers WHERE last_day BETWEEN $1 AND $2 AND ($3 OR NOT unit_tests) GROUP BY last_day",
                last_from,
            )
            .await?,
        })
    }

    async fn trim_dead_letters(&self, keep: u64) -> Result<Vec<(String, u64)>> {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        let client = self.client().await?;
        let channels = client
            .query("SELECT DISTINCT channel FROM dead_letters", &[])
            .await
            .map_err(map_err)?;
        let mut removed = Vec::new();
        for row in channels {
            let channel: String = row.get(0);
            let n = client
                .execute(
                    "DELETE FROM dead_letters WHERE channel = $1 AND id <= \
                     (SELECT id FROM dead_letters WHERE channel = $1 \
                      ORDER BY id DESC LIMIT 1 OFFSET $2)",
                    &[&channel, &keep],
                )
                .await
                .map_err(map_err)?;
            if n > 0 {
                removed.push((channel, n));
            }
        }
        Ok(removed)
    }

    async fn dead_letters(&self, channel: Option<&str>, limit: u32) -> Result<Vec<DeadLetter>> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, received_at, channel, reason, payload FROM dead_letters \
                 WHERE $1::text IS NULL OR channel = $1 ORDER BY id DESC LIMIT $2",
                &[&channel, &i64::from(limit)],
            )
            .await
            .map_err(map_err)?;
        Ok(rows
            .iter()
            .map(|r| DeadLetter {
                id: r.get(0),
                received_at: r.get(1),
                channel: r.get(2),
                reason: r.get(3),
                payload: r.get(4),
            })
            .collect())
    }

    async fn create_project(
        &self,
        name: &str,
        public_key: &str,
        at: DateTime<Utc>,
    ) -> Result<ProjectInfo> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_err)?;
        let id: i64 = tx
            .query_one(
                "INSERT INTO projects (name, created_at) VALUES ($1, $2) RETURNING id",
                &[&name, &at],
            )
            .await
            .map_err(|e| match map_err(e) {
                StoreError::Conflict(_) => StoreError::Conflict(format!("project {name:?} exists")),
                other => other,
            })?
            .get(0);
        tx.execute(
            "INSERT INTO project_keys (public_key, project_id, created_at) VALUES ($1, $2, $3)",
            &[&public_key, &id, &at],
        )
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(ProjectInfo {
            id,
            name: name.to_string(),
            created_at: at,
            keys: vec![KeyInfo {
                public_key: public_key.to_string(),
                project_id: id,
                enabled: true,
                rate_limit_per_minute: None,
                dsn: None,
            }],
        })
    }

    async fn projects(&self) -> Result<Vec<ProjectInfo>> {
        let client = self.client().await?;
        let mut projects: Vec<ProjectInfo> = client
            .query("SELECT id, name, created_at FROM projects ORDER BY id", &[])
            .await
            .map_err(map_err)?
            .iter()
            .map(|r| ProjectInfo {
                id: r.get(0),
                name: r.get(1),
                created_at: r.get(2),
                keys: Vec::new(),
            })
            .collect();
        for row in client
            .query(
                "SELECT public_key, project_id, enabled, rate_limit_per_minute FROM project_keys ORDER BY created_at, public_key",
                &[],
            )
            .await
            .map_err(map_err)?
        {
            let key = key_from_row(&row);
            if let Some(p) = projects.iter_mut().find(|p| p.id == key.project_id) {
                p.keys.push(key);
            }
        }
        Ok(projects)
    }

    async fn project_key(&self, public_key: &str) -> Result<Option<KeyInfo>> {
        Ok(self
            .client()
            .await?
            .query_opt(
                "SELECT public_key, project_id, enabled, rate_limit_per_minute FROM project_keys WHERE public_key = $1",
                &[&public_key],
            )
            .await
            .map_err(map_err)?
            .as_ref()
            .map(key_from_row))
    }

    async fn update_key(
        &self,
        public_key: &str,
        enabled: Option<bool>,
        rate_limit: Option<u32>,
    ) -> Result<KeyInfo> {
        let limit: Option<Option<i32>> = rate_limit.map(|l| (l > 0).then_some(l as i32));
        let row = self
            .client()
            .await?
            .query_opt(
                "UPDATE project_keys SET enabled = coalesce($2, enabled), \
                 rate_limit_per_minute = CASE WHEN $3 THEN $4 ELSE rate_limit_per_minute END \
                 WHERE public_key = $1 RETURNING public_key, project_id, enabled, rate_limit_per_minute",
                &[&public_key, &enabled, &limit.is_some(), &limit.flatten()],
            )
            .await
            .map_err(map_err)?
            .ok_or_else(|| StoreError::NotFound(format!("key {public_key}")))?;
        Ok(key_from_row(&row))
    }

    async fn issues(&self, f: &IssueFilter) -> Result<Vec<IssueSummary>> {
        let order = match f.sort {
            IssueSort::LastSeen => "i.last_seen DESC, i.id DESC",
            IssueSort::Count => "i.count DESC, i.id DESC",
        };
        let rows = self
            .client()
            .await?
            .query(
                &format!(
                    "SELECT {ISSUE_COLUMNS} FROM issues i WHERE ($1::int8 IS NULL OR i.project_id = $1) \
                     AND ($2::text IS NULL OR i.level = $2) \
                     AND ($3::text IS NULL OR EXISTS (SELECT 1 FROM issue_counts c WHERE c.issue_id = i.id AND c.release = $3)) \
                     AND ($4::text IS NULL OR EXISTS (SELECT 1 FROM issue_counts c WHERE c.issue_id = i.id AND c.environment = $4)) \
                     ORDER BY {order} LIMIT $5"
                ),
                &[&f.project_id, &f.level.map(Level::as_str), &f.release, &f.environment, &i64::from(f.limit.max(1))],
            )
            .await
            .map_err(map_err)?;
        rows.iter().map(issue_from_row).collect()
    }

    async fn issue(&self, id: i64) -> Result<Option<IssueDetail>> {
        let client = self.client().await?;
        let Some(row) = client
            .query_opt(
                &format!("SELECT {ISSUE_COLUMNS} FROM issues i WHERE i.id = $1"),
                &[&id],
            )
            .await
            .map_err(map_err)?
        else {
            return Ok(None);
        };
        let issue = issue_from_row(&row)?;
        let payload: String = client
            .query_one(
                "SELECT payload FROM events WHERE issue_id = $1 ORDER BY received_at DESC LIMIT 1",
                &[&id],
            )
            .await
            .map_err(map_err)?
            .get(0);
        let latest_event =
            serde_json::from_str(&payload).map_err(|e| StoreError::Invalid(e.to_string()))?;
        let by_release = client
            .query(
                "SELECT release, sum(count)::int8 FROM issue_counts WHERE issue_id = $1 GROUP BY release ORDER BY release",
                &[&id],
            )
            .await
            .map_err(map_err)?
            .iter()
            .map(|r| {
                let release: String = r.get(0);
                CountBy { key: (!release.is_empty()).then_some(release), count: r.get::<_, i64>(1) as u64 }
            })
            .collect();
        let by_day = client
            .query("SELECT day, sum(count)::int8 FROM issue_counts WHERE issue_id = $1 GROUP BY day ORDER BY day", &[&id])
            .await
            .map_err(map_err)?
            .iter()
            .map(|r| CountBy { key: r.get(0), count: r.get::<_, i64>(1) as u64 })
            .collect();
        Ok(Some(IssueDetail {
            issue,
            latest_event,
            by_release,
            by_day,
        }))
    }

    async fn secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>> {
        perf::secret(&**self.client().await?, name, candidate).await
    }

    async fn create_api_key(
        &self,
        name: &str,
        key_hash: &str,
        prefix: &str,
        at: DateTime<Utc>,
    ) -> Result<ApiKeyInfo> {
        perf::create_api_key(&**self.client().await?, name, key_hash, prefix, at).await
    }

    async fn api_keys(&self) -> Result<Vec<ApiKeyInfo>> {
        perf::api_keys(&**self.client().await?).await
    }

    async fn revoke_api_key(&self, name: &str, at: DateTime<Utc>) -> Result<ApiKeyInfo> {
        perf::revoke_api_key(&**self.client().await?, name, at).await
    }

    async fn api_key_valid(&self, key_hash: &str) -> Result<bool> {
        perf::api_key_valid(&**self.client().await?, key_hash).await
    }

    async fn perf_rows(&self, select: &PerfSelect) -> Result<Vec<PerfRow>> {
        perf::rows(&**self.client().await?, select).await
    }

    async fn compact_perf(&self) -> Result<u64> {
        perf::compact(&mut self.client().await?).await
    }

    async fn count_trace_events(&self) -> Result<u64> {
        let row = self
            .client()
            .await?
            .query_one("SELECT count(*) FROM trace_events", &[])
            .await
            .map_err(map_err)?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn trace_events(&self, limit: u32) -> Result<Vec<StoredTrace>> {
        perf::trace_events(&**self.client().await?, limit).await
    }
}
