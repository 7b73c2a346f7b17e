//! The SQLite backend of [`beacon_store::Store`]: one file, WAL journal, `synchronous=FULL`.
//!
//! One connection writes (group-committed batches arrive from the collector's ingest service), one
//! connection reads, one checkpoints in the background; WAL lets them run side by side. Reads and
//! writes run on tokio's blocking pool.

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
use rusqlite::{Connection, OptionalExtension, params};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// The SQLite store. Cheap to clone.
#[derive(Clone)]
pub struct SqliteStore {
    writer: Arc<Mutex<Connection>>,
    reader: Arc<Mutex<Connection>>,
    /// Sketch cells of committed trace events not yet in `perf_sketches` (see `perf::Pending`).
    pending: Arc<Mutex<perf::Pending>>,
    /// Keeps the checkpoint thread running while any clone of the store lives.
    _alive: Arc<()>,
}

impl SqliteStore {
    /// Opens (creating when missing) the database file and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Self> {
        let mut writer = connect(path)?;
        migrations::apply(&mut writer)?;
        perf::recover(&mut writer)?;
        let reader = connect(path)?;
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
            writer: Arc::new(Mutex::new(writer)),
            reader: Arc::new(Mutex::new(reader)),
            pending: Arc::default(),
            _alive: alive,
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
    StoreError::Unavailable("sqlite connection lock poisoned by an earlier panic".into())
}

pub(crate) fn map_err(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            StoreError::Conflict(e.to_string())
        }
        rusqlite::Error::FromSqlConversionFailure(..) | rusqlite::Error::InvalidColumnType(..) => {
            StoreError::Invalid(e.to_string())
        }
        _ => StoreError::Unavailable(format!("sqlite: {e}")),
    }
}

/// Runs `f` with a connection on the blocking pool.
async fn run<T: Send + 'static>(
    conn: &Arc<Mutex<Connection>>,
    f: impl FnOnce(&mut Connection) -> Result<T> + Send + 'static,
) -> Result<T> {
    let conn = conn.clone();
    tokio::task::spawn_blocking(move || {
        let mut guard = conn.lock().map_err(|_| poisoned())?;
        f(&mut guard)
    })
    .await
    .map_err(|e| StoreError::Unavailable(format!("sqlite task failed: {e}")))?
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
        .ok_or_else(|| StoreError::Invalid(format!("timestamp {ms} out of range")))
}

/// Rows per multi-row `INSERT` (14 parameters each, well under SQLite's limit of 32766).
const CHECK_CHUNK: usize = 64;
const CHECK_COLUMNS: usize = 14;

/// `INSERT … VALUES (…), (…) … ON CONFLICT … RETURNING` for 1 to `CHECK_CHUNK` rows.
static INSERT_CHECKS: std::sync::LazyLock<Vec<String>> = std::sync::LazyLock::new(|| {
    (1..=CHECK_CHUNK)
        .map(|rows| {
            let values: Vec<String> = (0..rows)
                .map(|r| {
                    let p: Vec<String> = (1..=CHECK_COLUMNS)
                        .map(|c| format!("?{}", r * CHECK_COLUMNS + c))
                        .collect();
                    format!("({})", p.join(", "))
                })
                .collect();
            format!(
                "INSERT INTO checks (server_id, day, received_at, version, build, enterprise, os, db, \
                 db_version, teams, users, activated_users, unit_tests, last_check_ms) VALUES {} \
                 ON CONFLICT (day, server_id) DO UPDATE SET received_at = excluded.received_at, \
                 version = excluded.version, build = excluded.build, enterprise = excluded.enterprise, \
                 os = excluded.os, db = excluded.db, db_version = excluded.db_version, \
                 teams = excluded.teams, users = excluded.users, \
                 activated_users = excluded.activated_users, unit_tests = excluded.unit_tests, \
                 last_check_ms = excluded.last_check_ms, checks_that_day = checks.checks_that_day + 1 \
                 RETURNING day, server_id, checks_that_day",
                values.join(", ")
            )
        })
        .collect()
});

/// Upserts checks, many rows per statement, and tells for each whether it was the first of its
/// (day, server) — `checks_that_day` is 1 — or a repeat. Rows of one statement are applied in order,
/// so repeats of one key within a chunk return 1, 2, 3 … in the order they were given.
fn write_checks(
    tx: &rusqlite::Transaction<'_>,
    recs: &[&CheckRecord],
) -> Result<Vec<WriteOutcome>> {
    use rusqlite::ToSql;
    let mut out = Vec::with_capacity(recs.len());
    for chunk in recs.chunks(CHECK_CHUNK) {
        let keys: Vec<(i64, &str)> = chunk
            .iter()
            .map(|r| (day_num(r.day()), r.check.server_id.as_str()))
            .collect();
        let derived: Vec<(i64, String)> = chunk
            .iter()
            .map(|r| (ms(r.received_at), r.check.version.to_string()))
            .collect();
        let mut params: Vec<&dyn ToSql> = Vec::with_capacity(chunk.len() * CHECK_COLUMNS);
        for ((rec, (day, _)), (received, version)) in chunk.iter().zip(&keys).zip(&derived) {
            let c = &rec.check;
            params.extend_from_slice(&[
                &c.server_id as &dyn ToSql,
                day,
                received,
                version,
                &c.build,
                &c.enterprise,
                &c.os,
                &c.db,
                &c.db_version,
                &c.teams,
                &c.users,
                &c.activated_users,
                &c.unit_tests,
                &c.last_check_ms,
            ]);
        }
        let mut stmt = tx
            .prepare_cached(&INSERT_CHECKS[chunk.len() - 1])
            .map_err(map_err)?;
        let mut rows = stmt.query(params.as_slice()).map_err(map_err)?;
        let mut returned: std::collections::HashMap<(i64, String), Vec<i64>> =
            std::collections::HashMap::with_capacity(chunk.len());
        while let Some(row) = rows.next().map_err(map_err)? {
            let key = (row.get(0).map_err(map_err)?, row.get(1).map_err(map_err)?);
            returned
                .entry(key)
                .or_default()
                .push(row.get(2).map_err(map_err)?);
        }
        for counts in returned.values_mut() {
            counts.sort_unstable_by(|a, b| b.cmp(a)); // smallest last, popped first
        }
        for (day, id) in keys {
            let n = returned
                .get_mut(&(day, id.to_string()))
                .and_then(Vec::pop)
                .ok_or_else(|| StoreError::Invalid(format!("no RETURNING row for check {id}")))?;
            out.push(if n == 1 {
                WriteOutcome::Accepted
            } else {
                WriteOutcome::Duplicate
            });
        }
    }
    Ok(out)
}

/// Brings the `servers` rollup (first and last day of every server) up to date with `checks`.
/// Kept off the write path: only the days since the last rollup (and the one before, for late rows)
/// are scanned, when a report needs it.
fn roll_up_servers(conn: &mut Connection) -> Result<()> {
    let tx = conn.transaction().map_err(map_err)?;
    let watermark: i64 = tx
        .query_row(
            "SELECT value FROM meta WHERE key = 'servers_rollup_day'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(map_err)?
        .unwrap_or(i64::MIN);
    let Some(max_day) = tx
        .query_row("SELECT max(day) FROM checks", [], |r| {
            r.get::<_, Option<i64>>(0)
        })
        .map_err(map_err)?
    else {
        return Ok(());
    };
    let from = watermark.saturating_sub(1);
    tx.execute(
        "INSERT INTO servers (server_id, first_day, last_day, unit_tests) \
         SELECT server_id, min(day), max(day), 0 FROM checks WHERE day >= ?1 GROUP BY server_id \
         ON CONFLICT (server_id) DO UPDATE SET first_day = min(first_day, excluded.first_day), \
         last_day = max(last_day, excluded.last_day)",
        [from],
    )
    .map_err(map_err)?;
    tx.execute(
        "UPDATE servers SET unit_tests = (SELECT c.unit_tests FROM checks c \
         WHERE c.day = servers.last_day AND c.server_id = servers.server_id) WHERE last_day >= ?1",
        [from],
    )
    .map_err(map_err)?;
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('servers_rollup_day', ?1) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [max_day],
    )
    .map_err(map_err)?;
    tx.commit().map_err(map_err)
}

fn write_dead_letter(tx: &rusqlite::Transaction<'_>, d: &NewDeadLetter) -> Result<WriteOutcome> {
    tx.prepare_cached(
        "INSERT INTO dead_letters (received_at, channel, reason, payload) VALUES (?1, ?2, ?3, ?4)",
    )
    .map_err(map_err)?
    .execute(params![ms(d.received_at), d.channel, d.reason, d.payload])
    .map_err(map_err)?;
    Ok(WriteOutcome::Accepted)
}

fn level_from(s: &str) -> rusqlite::Result<Level> {
    serde_json::from_value(serde_json::Value::String(s.to_string())).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// Writes a batch's events: one insert per event (a repeat of a (project, event id) is ignored and
/// reported as a duplicate), then the issue bookkeeping once per issue, day, release and server of
/// the batch rather than once per event — error bursts are mostly one issue.
fn write_events(
    tx: &rusqlite::Transaction<'_>,
    recs: &[&EventRecord],
) -> Result<Vec<WriteOutcome>> {
    use std::collections::BTreeMap;
    let mut out = Vec::with_capacity(recs.len());
    // Inserted rows per (project, group hash), in order.
    let mut groups: BTreeMap<(i64, &str), Vec<(i64, &EventRecord)>> = BTreeMap::new();
    {
        let mut insert = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO events (project_id, event_id, issue_id, received_at, timestamp, level, \
                 release, environment, server_id, payload) VALUES (?1, ?2, 0, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .map_err(map_err)?;
        for r in recs {
            let e = &r.event;
            let n = insert
                .execute(params![
                    r.project_id,
                    e.event_id,
                    ms(r.received_at),
                    ms(e.timestamp),
                    e.level.as_str(),
                    e.release,
                    e.environment,
                    r.server_id,
                    r.event_json
                ])
                .map_err(map_err)?;
            if n == 0 {
                out.push(WriteOutcome::Duplicate);
            } else {
                out.push(WriteOutcome::Accepted);
                groups
                    .entry((r.project_id, r.group_hash.as_str()))
                    .or_default()
                    .push((tx.last_insert_rowid(), r));
            }
        }
    }
    for ((project_id, hash), events) in groups {
        let (first, last) = (
            events.first().expect("non-empty").1,
            events.last().expect("non-empty").1,
        );
        let issue_id: i64 = tx
            .prepare_cached(
                "INSERT INTO issues (project_id, group_hash, title, culprit, level, first_seen, last_seen, count) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (project_id, group_hash) DO UPDATE SET \
                 last_seen = max(last_seen, excluded.last_seen), first_seen = min(first_seen, excluded.first_seen), \
                 count = count + excluded.count, level = excluded.level RETURNING id",
            )
            .map_err(map_err)?
            .query_row(
                params![
                    project_id,
                    hash,
                    first.title,
                    first.culprit,
                    last.event.level.as_str(),
                    ms(first.received_at),
                    ms(last.received_at),
                    events.len() as i64
                ],
                |row| row.get(0),
            )
            .map_err(map_err)?;
        let mut set_issue = tx
            .prepare_cached("UPDATE events SET issue_id = ?1 WHERE rowid = ?2")
            .map_err(map_err)?;
        let mut counts: BTreeMap<(i64, &str, &str), i64> = BTreeMap::new();
        let mut servers: Vec<&str> = Vec::new();
        for (rowid, r) in &events {
            set_issue
                .execute(params![issue_id, rowid])
                .map_err(map_err)?;
            let e = &r.event;
            *counts
                .entry((
                    day_num(r.received_at.date_naive()),
                    e.release.as_deref().unwrap_or(""),
                    e.environment.as_deref().unwrap_or(""),
                ))
                .or_default() += 1;
            if let Some(s) = r.server_id.as_deref()
                && !servers.contains(&s)
            {
                servers.push(s);
            }
        }
        let mut count = tx
            .prepare_cached(
                "INSERT INTO issue_counts (issue_id, day, release, environment, count) VALUES (?1, ?2, ?3, ?4, ?5) \
                 ON CONFLICT (issue_id, day, release, environment) DO UPDATE SET count = count + excluded.count",
            )
            .map_err(map_err)?;
        for ((day, release, environment), n) in counts {
            count
                .execute(params![issue_id, day, release, environment, n])
                .map_err(map_err)?;
        }
        let mut server = tx
            .prepare_cached(
                "INSERT OR IGNORE INTO issue_servers (issue_id, server_id) VALUES (?1, ?2)",
            )
            .map_err(map_err)?;
        for s in servers {
            server.execute(params![issue_id, s]).map_err(map_err)?;
        }
    }
    Ok(out)
}

fn key_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyInfo> {
    Ok(KeyInfo {
        public_key: r.get(0)?,
        project_id: r.get(1)?,
        enabled: r.get(2)?,
        rate_limit_per_minute: r.get(3)?,
        dsn: None,
    })
}

const ISSUE_COLUMNS: &str = "i.id, i.project_id, i.title, i.culprit, i.level, i.first_seen, i.last_seen, i.count, \
     (SELECT count(*) FROM issue_servers s WHERE s.issue_id = i.id)";

fn issue_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(IssueSummary, i64, i64)> {
    let level: String = r.get(4)?;
    Ok((
        IssueSummary {
            id: r.get(0)?,
            project_id: r.get(1)?,
            title: r.get(2)?,
            culprit: r.get(3)?,
            level: level_from(&level)?,
            first_seen: DateTime::<Utc>::MIN_UTC,
            last_seen: DateTime::<Utc>::MIN_UTC,
            count: r.get::<_, i64>(7)? as u64,
            servers: r.get::<_, i64>(8)? as u64,
        },
        r.get(5)?,
        r.get(6)?,
    ))
}

fn finish_issue((mut i, first, last): (IssueSummary, i64, i64)) -> Result<IssueSummary> {
    i.first_seen = time_from(first)?;
    i.last_seen = time_from(last)?;
    Ok(i)
}

fn bulletin_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(Bulletin, i64, Option<i64>)> {
    let severity: String = r.get(2)?;
    let severity: Severity = severity.parse().map_err(|e: beacon_wire::FieldError| {
        rusqlite::Error::FromSqlConversionFailure(2, rusqlite::types::Type::Text, Box::new(e))
    })?;
    Ok((
        Bulletin {
            id: r.get(0)?,
            title: r.get(1)?,
            severity,
            affected: r.get(3)?,
            fixed_in: r.get(4)?,
            body: r.get(5)?,
            published_at: DateTime::<Utc>::MIN_UTC,
            retracted_at: None,
        },
        r.get(6)?,
        r.get(7)?,
    ))
}

fn finish_bulletin(
    (mut b, published, retracted): (Bulletin, i64, Option<i64>),
) -> Result<Bulletin> {
    b.published_at = time_from(published)?;
    b.retracted_at = retracted.map(time_from).transpose()?;
    Ok(b)
}

const BULLETIN_COLUMNS: &str =
    "id, title, severity, affected, fixed_in, body, published_at, retracted_at";

fn day_counts(
    conn: &Connection,
    sql: &str,
    from: NaiveDate,
    to: NaiveDate,
    include_test: bool,
) -> Result<Vec<DayCount>> {
    let mut stmt = conn.prepare_cached(sql).map_err(map_err)?;
    let rows = stmt
        .query_map(params![day_num(from), day_num(to), include_test], |r| {
            Ok(DayCount {
                day: day_from(r.get(0)?),
                count: r.get::<_, i64>(1)? as u64,
            })
        })
        .map_err(map_err)?;
    rows.collect::<rusqlite::Result<_>>().map_err(map_err)
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
                    WriteOp::DeadLetter(d) => out[i] = write_dead_letter(&tx, d)?,
                    WriteOp::Event(e) => {
                        event_at.push(i);
                        events.push(&**e);
                    }
                    WriteOp::Traces(t) => traces.push(&**t),
                }
            }
            let written = perf::write_traces(&tx, &traces)?;
            for (i, outcome) in check_at.into_iter().zip(write_checks(&tx, &checks)?) {
                out[i] = outcome;
            }
            for (i, outcome) in event_at.into_iter().zip(write_events(&tx, &events)?) {
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
                    if let Err(e) = perf::fold_pending(conn, &pending) {
                        tracing::warn!(error = %e, "folding trace sketches failed; retrying later");
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn count_checks(&self) -> Result<u64> {
        run(&self.reader, |c| {
            c.query_row("SELECT count(*) FROM checks", [], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
                .map_err(map_err)
        })
        .await
    }

    async fn insert_bulletin(&self, b: &Bulletin) -> Result<()> {
        let b = b.clone();
        run(&self.writer, move |c| {
            c.execute(
                "INSERT INTO bulletins (id, title, severity, affected, fixed_in, body, published_at, retracted_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    b.id,
                    b.title,
                    b.severity.as_str(),
                    b.affected,
                    b.fixed_in,
                    b.body,
                    ms(b.published_at),
                    b.retracted_at.map(ms)
                ],
            )
            .map_err(|e| match map_err(e) {
                StoreError::Conflict(_) => StoreError::Conflict(format!("bulletin {} exists", b.id)),
                other => other,
            })?;
            Ok(())
        })
        .await
    }

    async fn bulletins(&self) -> Result<Vec<Bulletin>> {
        run(&self.reader, |c| {
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {BULLETIN_COLUMNS} FROM bulletins ORDER BY published_at, id"
                ))
                .map_err(map_err)?;
            let rows = stmt.query_map([], bulletin_from_row).map_err(map_err)?;
            rows.map(|r| r.map_err(map_err).and_then(finish_bulletin))
                .collect()
        })
        .await
    }

    async fn bulletin(&self, id: &str) -> Result<Option<Bulletin>> {
        let id = id.to_string();
        run(&self.reader, move |c| {
            c.query_row(
                &format!("SELECT {BULLETIN_COLUMNS} FROM bulletins WHERE id = ?1"),
                [id],
                bulletin_from_row,
            )
            .optional()
            .map_err(map_err)?
            .map(finish_bulletin)
            .transpose()
        })
        .await
    }

    async fn retract_bulletin(&self, id: &str, at: DateTime<Utc>) -> Result<Bulletin> {
        let id = id.to_string();
        run(&self.writer, move |c| {
            let tx = c.transaction().map_err(map_err)?;
            tx.execute(
                "UPDATE bulletins SET retracted_at = ?2 WHERE id = ?1 AND retracted_at IS NULL",
                params![id, ms(at)],
            )
            .map_err(map_err)?;
            let b = tx
                .query_row(
                    &format!("SELECT {BULLETIN_COLUMNS} FROM bulletins WHERE id = ?1"),
                    [&id],
                    bulletin_from_row,
                )
                .optional()
                .map_err(map_err)?
                .ok_or_else(|| StoreError::NotFound(format!("bulletin {id}")))?;
            tx.commit().map_err(map_err)?;
            finish_bulletin(b)
        })
        .await
    }

    async fn add_admin_token(
        &self,
        token_hash: &str,
        label: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let (hash, label) = (token_hash.to_string(), label.to_string());
        run(&self.writer, move |c| {
            c.execute(
                "INSERT INTO admin_tokens (token_hash, label, created_at) VALUES (?1, ?2, ?3)",
                params![hash, label, ms(at)],
            )
            .map_err(map_err)?;
            Ok(())
        })
        .await
    }

    async fn admin_token_count(&self) -> Result<u64> {
        run(&self.reader, |c| {
            c.query_row("SELECT count(*) FROM admin_tokens", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(map_err)
        })
        .await
    }

    async fn admin_token_valid(&self, token_hash: &str) -> Result<bool> {
        let hash = token_hash.to_string();
        run(&self.reader, move |c| {
            c.query_row(
                "SELECT 1 FROM admin_tokens WHERE token_hash = ?1",
                [hash],
                |_| Ok(()),
            )
            .optional()
            .map(|o| o.is_some())
            .map_err(map_err)
        })
        .await
    }

    async fn latest_per_server(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        include_test: bool,
    ) -> Result<Vec<ServerSnapshot>> {
        run(&self.reader, move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT c.server_id, c.day, c.version, c.enterprise, c.os, c.db, c.db_version, \
                     c.teams, c.users, c.activated_users, c.unit_tests \
                     FROM checks c JOIN (SELECT server_id, max(day) AS day FROM checks \
                     WHERE day BETWEEN ?1 AND ?2 GROUP BY server_id) m \
                     ON c.server_id = m.server_id AND c.day = m.day \
                     WHERE ?3 OR c.unit_tests = 0 ORDER BY c.server_id",
                )
                .map_err(map_err)?;
            let rows = stmt
                .query_map(params![day_num(from), day_num(to), include_test], |r| {
                    Ok(ServerSnapshot {
                        server_id: r.get(0)?,
                        day: day_from(r.get(1)?),
                        version: r.get(2)?,
                        enterprise: r.get(3)?,
                        os: r.get(4)?,
                        db: r.get(5)?,
                        db_version: r.get(6)?,
                        teams: r.get(7)?,
                        users: r.get(8)?,
                        activated_users: r.get(9)?,
                        unit_tests: r.get(10)?,
                    })
                })
                .map_err(map_err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(map_err)
        })
        .await
    }

    async fn version_day_counts(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        include_test: bool,
    ) -> Result<Vec<VersionDayCount>> {
        run(&self.reader, move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT day, version, count(*), coalesce(sum(activated_users), 0) FROM checks \
                     WHERE day BETWEEN ?1 AND ?2 AND (?3 OR unit_tests = 0) \
                     GROUP BY day, version ORDER BY day, version",
                )
                .map_err(map_err)?;
            let rows = stmt
                .query_map(params![day_num(from), day_num(to), include_test], |r| {
                    Ok(VersionDayCount {
                        day: day_from(r.get(0)?),
                        version: r.get(1)?,
                        servers: r.get::<_, i64>(2)? as u64,
                        activated_users: r.get(3)?,
                    })
                })
                .map_err(map_err)?;
            rows.collect::<rusqlite::Result<_>>().map_err(map_err)
        })
        .await
    }

    async fn growth_raw(
        &self,
        from: NaiveDate,
        to: NaiveDate,
        last_from: NaiveDate,
        include_test: bool,
    ) -> Result<GrowthRaw> {
        run(&self.writer, move |c| {
            roll_up_servers(c)?;
            Ok(GrowthRaw {
                servers: day_counts(
                    c,
                    "SELECT day, count(*) FROM checks WHERE day BETWEEN ?1 AND ?2 \
                     AND (?3 OR unit_tests = 0) GROUP BY day",
                    from,
                    to,
                    include_test,
                )?,
                first_seen: day_counts(
                    c,
                    "SELECT first_day, count(*) FROM servers WHERE first_day BETWEEN ?1 AND ?2 \
                     AND (?3 OR unit_tests = 0) GROUP BY first_day",
                    from,
                    to,
                    include_test,
                )?,
                last_seen: day_counts(
                    c,
                    "SELECT last_day, count(*) FROM servers WHERE last_day BETWEEN ?1 AND ?2 \
                     AND (?3 OR unit_tests = 0) GROUP BY last_day",
                    last_from,
                    to,
                    include_test,
                )?,
            })
        })
        .await
    }

    async fn trim_dead_letters(&self, keep: u64) -> Result<Vec<(String, u64)>> {
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        run(&self.writer, move |c| {
            let channels = c
                .prepare_cached("SELECT DISTINCT channel FROM dead_letters")
                .map_err(map_err)?
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(map_err)?
                .collect::<rusqlite::Result<Vec<_>>>()
                .map_err(map_err)?;
            let mut removed = Vec::new();
            for channel in channels {
                let n = c
                    .prepare_cached(
                        "DELETE FROM dead_letters WHERE channel = ?1 AND id <= \
                         (SELECT id FROM dead_letters WHERE channel = ?1 \
                          ORDER BY id DESC LIMIT 1 OFFSET ?2)",
                    )
                    .map_err(map_err)?
                    .execute(params![channel, keep])
                    .map_err(map_err)?;
                if n > 0 {
                    removed.push((channel, n as u64));
                }
            }
            Ok(removed)
        })
        .await
    }

    async fn dead_letters(&self, channel: Option<&str>, limit: u32) -> Result<Vec<DeadLetter>> {
        let channel = channel.map(str::to_string);
        run(&self.reader, move |c| {
            let mut stmt = c
                .prepare_cached(
                    "SELECT id, received_at, channel, reason, payload FROM dead_letters \
                     WHERE ?1 IS NULL OR channel = ?1 ORDER BY id DESC LIMIT ?2",
                )
                .map_err(map_err)?;
            let rows = stmt
                .query_map(params![channel, limit], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                    ))
                })
                .map_err(map_err)?;
            rows.map(|r| {
                let (id, at, channel, reason, payload) = r.map_err(map_err)?;
                Ok(DeadLetter {
                    id,
                    received_at: time_from(at)?,
                    channel,
                    reason,
                    payload,
                })
            })
            .collect()
        })
        .await
    }

    async fn create_project(
        &self,
        name: &str,
        public_key: &str,
        at: DateTime<Utc>,
    ) -> Result<ProjectInfo> {
        let (name, key) = (name.to_string(), public_key.to_string());
        run(&self.writer, move |c| {
            let tx = c.transaction().map_err(map_err)?;
            let id: i64 = tx
                .query_row(
                    "INSERT INTO projects (name, created_at) VALUES (?1, ?2) RETURNING id",
                    params![name, ms(at)],
                    |r| r.get(0),
                )
                .map_err(|e| match map_err(e) {
                    StoreError::Conflict(_) => {
                        StoreError::Conflict(format!("project {name:?} exists"))
                    }
                    other => other,
                })?;
            tx.execute(
                "INSERT INTO project_keys (public_key, project_id, created_at) VALUES (?1, ?2, ?3)",
                params![key, id, ms(at)],
            )
            .map_err(map_err)?;
            tx.commit().map_err(map_err)?;
            Ok(ProjectInfo {
                id,
                name,
                created_at: time_from(ms(at))?,
                keys: vec![KeyInfo {
                    public_key: key,
                    project_id: id,
                    enabled: true,
                    rate_limit_per_minute: None,
                    dsn: None,
                }],
            })
        })
        .await
    }

    async fn projects(&self) -> Result<Vec<ProjectInfo>> {
        run(&self.reader, |c| {
            let mut projects: Vec<ProjectInfo> = {
                let mut stmt = c.prepare_cached("SELECT id, name, created_at FROM projects ORDER BY id").map_err(map_err)?;
                let rows = stmt
                    .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)?)))
                    .map_err(map_err)?;
                rows.map(|r| {
                    let (id, name, at) = r.map_err(map_err)?;
                    Ok(ProjectInfo { id, name, created_at: time_from(at)?, keys: Vec::new() })
                })
                .collect::<Result<_>>()?
            };
            let mut stmt = c
                .prepare_cached(
                    "SELECT public_key, project_id, enabled, rate_limit_per_minute FROM project_keys ORDER BY created_at, public_key",
                )
                .map_err(map_err)?;
            for key in stmt.query_map([], key_from_row).map_err(map_err)? {
                let key = key.map_err(map_err)?;
                if let Some(p) = projects.iter_mut().find(|p| p.id == key.project_id) {
                    p.keys.push(key);
                }
            }
            Ok(projects)
        })
        .await
    }

    async fn project_key(&self, public_key: &str) -> Result<Option<KeyInfo>> {
        let key = public_key.to_string();
        run(&self.reader, move |c| {
            c.query_row(
                "SELECT public_key, project_id, enabled, rate_limit_per_minute FROM project_keys WHERE public_key = ?1",
                [key],
                key_from_row,
            )
            .optional()
            .map_err(map_err)
        })
        .await
    }

    async fn update_key(
        &self,
        public_key: &str,
        enabled: Option<bool>,
        rate_limit: Option<u32>,
    ) -> Result<KeyInfo> {
        let key = public_key.to_string();
        run(&self.writer, move |c| {
            let tx = c.transaction().map_err(map_err)?;
            if let Some(e) = enabled {
                tx.execute("UPDATE project_keys SET enabled = ?2 WHERE public_key = ?1", params![key, e]).map_err(map_err)?;
            }
            if let Some(limit) = rate_limit {
                let limit = (limit > 0).then_some(limit);
                tx.execute("UPDATE project_keys SET rate_limit_per_minute = ?2 WHERE public_key = ?1", params![key, limit])
                    .map_err(map_err)?;
            }
            let info = tx
                .query_row(
                    "SELECT public_key, project_id, enabled, rate_limit_per_minute FROM project_keys WHERE public_key = ?1",
                    [&key],
                    key_from_row,
                )
                .optional()
                .map_err(map_err)?
                .ok_or_else(|| StoreError::NotFound(format!("key {key}")))?;
            tx.commit().map_err(map_err)?;
            Ok(info)
        })
        .await
    }

    async fn issues(&self, f: &IssueFilter) -> Result<Vec<IssueSummary>> {
        let f = f.clone();
        run(&self.reader, move |c| {
            let order = match f.sort {
                IssueSort::LastSeen => "i.last_seen DESC, i.id DESC",
                IssueSort::Count => "i.count DESC, i.id DESC",
            };
            let mut stmt = c
                .prepare_cached(&format!(
                    "SELECT {ISSUE_COLUMNS} FROM issues i WHERE (?1 IS NULL OR i.project_id = ?1) \
                     AND (?2 IS NULL OR i.level = ?2) \
                     AND (?3 IS NULL OR EXISTS (SELECT 1 FROM issue_counts c WHERE c.issue_id = i.id AND c.release = ?3)) \
                     AND (?4 IS NULL OR EXISTS (SELECT 1 FROM issue_counts c WHERE c.issue_id = i.id AND c.environment = ?4)) \
                     ORDER BY {order} LIMIT ?5"
                ))
                .map_err(map_err)?;
            let rows = stmt
                .query_map(
                    params![f.project_id, f.level.map(Level::as_str), f.release, f.environment, f.limit.max(1)],
                    issue_from_row,
                )
                .map_err(map_err)?;
            rows.map(|r| r.map_err(map_err).and_then(finish_issue)).collect()
        })
        .await
    }

    async fn issue(&self, id: i64) -> Result<Option<IssueDetail>> {
        run(&self.reader, move |c| {
            let Some(issue) = c
                .query_row(&format!("SELECT {ISSUE_COLUMNS} FROM issues i WHERE i.id = ?1"), [id], issue_from_row)
                .optional()
                .map_err(map_err)?
            else {
                return Ok(None);
            };
            let issue = finish_issue(issue)?;
            let payload: String = c
                .query_row(
                    "SELECT payload FROM events WHERE issue_id = ?1 ORDER BY received_at DESC LIMIT 1",
                    [id],
                    |r| r.get(0),
                )
                .map_err(map_err)?;
            let latest_event = serde_json::from_str(&payload).map_err(|e| StoreError::Invalid(e.to_string()))?;
            let mut stmt = c
                .prepare_cached("SELECT release, sum(count) FROM issue_counts WHERE issue_id = ?1 GROUP BY release ORDER BY release")
                .map_err(map_err)?;
            let by_release = stmt
                .query_map([id], |r| {
                    let release: String = r.get(0)?;
                    Ok(CountBy { key: (!release.is_empty()).then_some(release), count: r.get::<_, i64>(1)? as u64 })
                })
                .map_err(map_err)?
                .collect::<rusqlite::Result<_>>()
                .map_err(map_err)?;
            let mut stmt = c
                .prepare_cached("SELECT day, sum(count) FROM issue_counts WHERE issue_id = ?1 GROUP BY day ORDER BY day")
                .map_err(map_err)?;
            let by_day = stmt
                .query_map([id], |r| Ok(CountBy { key: day_from(r.get(0)?), count: r.get::<_, i64>(1)? as u64 }))
                .map_err(map_err)?
                .collect::<rusqlite::Result<_>>()
                .map_err(map_err)?;
            Ok(Some(IssueDetail { issue, latest_event, by_release, by_day }))
        })
        .await
    }

    async fn secret(&self, name: &str, candidate: &[u8]) -> Result<Vec<u8>> {
        let (name, candidate) = (name.to_string(), candidate.to_vec());
        run(&self.writer, move |c| perf::secret(c, &name, &candidate)).await
    }

    async fn create_api_key(
        &self,
        name: &str,
        key_hash: &str,
        prefix: &str,
        at: DateTime<Utc>,
    ) -> Result<ApiKeyInfo> {
        let (name, hash, prefix) = (name.to_string(), key_hash.to_string(), prefix.to_string());
        run(&self.writer, move |c| {
            perf::create_api_key(c, &name, &hash, &prefix, ms(at))
        })
        .await
    }

    async fn api_keys(&self) -> Result<Vec<ApiKeyInfo>> {
        run(&self.reader, |c| perf::api_keys(c)).await
    }

    async fn revoke_api_key(&self, name: &str, at: DateTime<Utc>) -> Result<ApiKeyInfo> {
        let name = name.to_string();
        run(&self.writer, move |c| {
            perf::revoke_api_key(c, &name, ms(at))
        })
        .await
    }

    async fn api_key_valid(&self, key_hash: &str) -> Result<bool> {
        let hash = key_hash.to_string();
        run(&self.reader, move |c| perf::api_key_valid(c, &hash)).await
    }

    async fn perf_rows(&self, select: &PerfSelect) -> Result<Vec<PerfRow>> {
        let (select, pending) = (select.clone(), self.pending.clone());
        run(&self.reader, move |c| perf::rows(c, &pending, &select)).await
    }

    async fn compact_perf(&self) -> Result<u64> {
        let pending = self.pending.clone();
        run(&self.writer, move |c| perf::fold_pending(c, &pending)).await
    }

    async fn count_trace_events(&self) -> Result<u64> {
        run(&self.reader, |c| {
            c.query_row("SELECT count(*) FROM trace_events", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(map_err)
        })
        .await
    }

    async fn trace_events(&self, limit: u32) -> Result<Vec<StoredTrace>> {
        run(&self.reader, move |c| perf::trace_events(c, limit)).await
    }
}
