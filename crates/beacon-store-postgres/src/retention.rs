//! Retention on PostgreSQL. `checks`, `events` and `trace_events` are partitioned by UTC day
//! (declarative `PARTITION BY RANGE`: `day`, `received_at`, `ts`; partitions `<table>_pYYYYMMDD`,
//! made by the SQL function `beacon_day_partition`, and a `<table>_default` partition catching rows
//! of days without one): expired days are dropped whole, and the rows of expired days in the
//! default partition are deleted in batches. Partitions are made ahead ([`AHEAD_DAYS`]) by every
//! run and when a store connects. The other tables (`event_ids`, sketches and deltas, dead letters,
//! issues) lose their expired rows in batches of [`BATCH_ROWS`], one transaction each.
//!
//! One collector at a time: a run holds the session advisory lock [`RETENTION_LOCK`] on its own
//! connection; a second one gets [`StoreError::Conflict`]. DDL (creating, dropping partitions) waits
//! at most [`DDL_LOCK_TIMEOUT`] for its table lock and is otherwise left to the next run, so that it
//! never queues ingestion behind a long report.

use crate::{PgStore, map_err};
use beacon_store::retention::{
    BATCH_ROWS, EVENT_BATCH_ROWS, RetentionChannel, RetentionOutcome, RetentionPolicy,
    RetentionRun, RetentionStatus, TRACE_TS_SPREAD_US, midnight, midnight_us,
};
use beacon_store::{Result, StoreError};
use chrono::{DateTime, Days, NaiveDate, Utc};
use tokio_postgres::Client;
use tokio_postgres::types::ToSql;

/// Session advisory lock of a retention run: one collector at a time.
const RETENTION_LOCK: i64 = 0x0062_6561_636f_6e02;

/// Partitions are made for the days from this many days back (trace events may be a week old when
/// they arrive) ...
const BEHIND_DAYS: u64 = TRACE_TS_SPREAD_US as u64 / 86_400_000_000;
/// ... to this many days ahead of today.
pub(crate) const AHEAD_DAYS: u64 = 7;

/// Longest wait of a partition's `CREATE` or `DROP` for its table lock.
const DDL_LOCK_TIMEOUT: &str = "200ms";

/// The tables partitioned by day.
const PARTITIONED: [&str; 3] = ["checks", "events", "trace_events"];

pub(crate) async fn status(s: &PgStore) -> Result<Vec<RetentionStatus>> {
    let client = s.client().await?;
    let mut out = Vec::new();
    for channel in RetentionChannel::ALL {
        let (oldest_day, rows): (Option<NaiveDate>, i64) = match channel {
            RetentionChannel::Checks => {
                let r = client
                    .query_one("SELECT min(day), count(*) FROM checks", &[])
                    .await
                    .map_err(map_err)?;
                (r.get(0), r.get(1))
            }
            RetentionChannel::Events | RetentionChannel::DeadLetters => {
                let table = if channel == RetentionChannel::Events {
                    "events"
                } else {
                    "dead_letters"
                };
                let r = client
                    .query_one(
                        &format!("SELECT min(received_at), count(*) FROM {table}"),
                        &[],
                    )
                    .await
                    .map_err(map_err)?;
                let t: Option<DateTime<Utc>> = r.get(0);
                (t.map(|t| t.date_naive()), r.get(1))
            }
            RetentionChannel::TraceEvents => {
                let r = client
                    .query_one("SELECT min(ts), count(*) FROM trace_events", &[])
                    .await
                    .map_err(map_err)?;
                let ts: Option<i64> = r.get(0);
                (
                    ts.and_then(DateTime::<Utc>::from_timestamp_micros)
                        .map(|t| t.date_naive()),
                    r.get(1),
                )
            }
            RetentionChannel::Sketches => {
                let r = client
                    .query_one(
                        "SELECT least((SELECT min(day) FROM perf_sketches), (SELECT min(day) FROM perf_deltas)), \
                         (SELECT count(*) FROM perf_sketches) + (SELECT count(*) FROM perf_deltas)",
                        &[],
                    )
                    .await
                    .map_err(map_err)?;
                (r.get(0), r.get::<_, i64>(1))
            }
        };
        let tables: &[&str] = match channel {
            RetentionChannel::Checks => &["checks"],
            RetentionChannel::Events => &["events", "event_ids"],
            RetentionChannel::TraceEvents => &["trace_events"],
            RetentionChannel::Sketches => &["perf_sketches", "perf_deltas"],
            RetentionChannel::DeadLetters => &["dead_letters"],
        };
        let tables: Vec<String> = tables.iter().map(|t| t.to_string()).collect();
        // The tables, their partitions, and each one's indexes and TOAST.
        let bytes: i64 = client
            .query_one(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c \
                 WHERE c.oid IN (SELECT to_regclass(t) FROM unnest($1::text[]) t) \
                 OR c.oid IN (SELECT i.inhrelid FROM pg_inherits i \
                              WHERE i.inhparent IN (SELECT to_regclass(t) FROM unnest($1::text[]) t))",
                &[&tables],
            )
            .await
            .map_err(map_err)?
            .get(0);
        out.push(RetentionStatus {
            channel,
            retention_days: 0,
            oldest_day,
            rows: rows.max(0) as u64,
            bytes: bytes.max(0) as u64,
        });
    }
    Ok(out)
}

pub(crate) async fn apply(
    s: &PgStore,
    policy: &RetentionPolicy,
    today: NaiveDate,
    dry_run: bool,
) -> Result<RetentionRun> {
    let client = s.client().await?;
    let locked: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&RETENTION_LOCK])
        .await
        .map_err(map_err)?
        .get(0);
    if !locked {
        return Err(StoreError::Conflict(
            "another collector is applying retention to this database".into(),
        ));
    }
    let result = apply_locked(&client, policy, today, dry_run).await;
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&RETENTION_LOCK])
        .await;
    if result.is_err() || unlocked.is_err() {
        // The session may still hold the lock: close it rather than give it back to the pool.
        drop(deadpool_postgres::Object::take(client));
    }
    result
}

async fn apply_locked(
    client: &Client,
    policy: &RetentionPolicy,
    today: NaiveDate,
    dry_run: bool,
) -> Result<RetentionRun> {
    if !dry_run {
        ensure_partitions(client, today).await;
    }
    let mut channels = Vec::new();
    let mut issues_removed = 0;
    for (channel, cutoff) in policy.cutoffs(today) {
        let removed = match cutoff {
            None => 0,
            Some(cut) => purge(client, channel, cut, dry_run).await?,
        };
        if channel == RetentionChannel::Checks
            && let Some(cut) = cutoff
            && !dry_run
        {
            // The rollups of expired checks: their days, and the servers whose latest check
            // expired. First days of the servers that stay are kept ("new" means first seen ever).
            for sql in [
                "DELETE FROM check_days WHERE day < $1",
                // One statement: exactly the servers deleted leave `first_days` (a server that
                // checks in meanwhile is locked by its writer, then no longer expired).
                "WITH gone AS (DELETE FROM server_latest WHERE day < $1 \
                 RETURNING first_day, unit_tests), \
                 g AS (SELECT first_day, unit_tests, count(*) AS n FROM gone GROUP BY 1, 2) \
                 UPDATE first_days f SET servers = f.servers - g.n FROM g \
                 WHERE f.day = g.first_day AND f.unit_tests = g.unit_tests",
                "DELETE FROM first_days WHERE servers <= 0 AND $1::date IS NOT NULL",
                "DELETE FROM latest_cells WHERE day < $1",
                "DELETE FROM error_cells WHERE day < $1",
            ] {
                client.execute(sql, &[&cut]).await.map_err(map_err)?;
            }
        }
        if channel == RetentionChannel::Events
            && let Some(cut) = cutoff
        {
            if !dry_run {
                // Servers whose every error day expires forget their last one, then leave
                // `error_cells` (in this order: see `errcells`).
                for sql in [
                    "UPDATE server_latest SET last_error_day = NULL WHERE last_error_day < $1",
                    "DELETE FROM error_cells WHERE last_error_day < $1",
                    "DELETE FROM error_days WHERE day < $1",
                ] {
                    client.execute(sql, &[&cut]).await.map_err(map_err)?;
                }
            }
            issues_removed = purge_issues(client, cut, dry_run).await?;
        }
        channels.push(RetentionOutcome {
            channel,
            retention_days: policy.days(channel),
            cutoff,
            removed,
        });
    }
    Ok(RetentionRun {
        dry_run,
        today,
        channels,
        issues_removed,
    })
}

/// Makes the missing day partitions from a day before `today` ([`BEHIND_DAYS`] for trace events,
/// whose timestamps may be a week old on arrival) to [`AHEAD_DAYS`] after it. A day whose rows already
/// sit in the default partition, or whose table lock is not granted in time, is left (its rows stay
/// in, or go to, the default partition); logged, never an error: writes never depend on it.
pub(crate) async fn ensure_partitions(client: &Client, today: NaiveDate) {
    let last = today
        .checked_add_days(Days::new(AHEAD_DAYS))
        .unwrap_or(today);
    for table in PARTITIONED {
        let behind = if table == "trace_events" {
            BEHIND_DAYS
        } else {
            1
        };
        let first = today.checked_sub_days(Days::new(behind)).unwrap_or(today);
        let existing = match day_partitions(client, table).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(table, error = %e, "cannot list the day partitions");
                return;
            }
        };
        let mut day = first;
        loop {
            if !existing.iter().any(|(_, d)| *d == day) {
                let made = ddl(
                    client,
                    "SELECT beacon_day_partition($1, $2)",
                    &[&table, &day],
                )
                .await;
                if let Err(e) = made {
                    tracing::debug!(table, %day, error = %e, "day partition not made now");
                }
            }
            match day.succ_opt() {
                Some(next) if next <= last => day = next,
                _ => break,
            }
        }
    }
}

/// One DDL statement in a transaction of its own that waits at most [`DDL_LOCK_TIMEOUT`] for locks.
async fn ddl(
    client: &Client,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> std::result::Result<(), tokio_postgres::Error> {
    client
        .batch_execute(&format!(
            "BEGIN; SET LOCAL lock_timeout = '{DDL_LOCK_TIMEOUT}'"
        ))
        .await?;
    let result = client.execute(sql, params).await;
    match result {
        Ok(_) => client.batch_execute("COMMIT").await,
        Err(e) => {
            let _ = client.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

/// The day partitions of `table` (name and day), oldest first.
async fn day_partitions(client: &Client, table: &str) -> Result<Vec<(String, NaiveDate)>> {
    let rows = client
        .query(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid \
             WHERE i.inhparent = to_regclass($1) ORDER BY 1",
            &[&table],
        )
        .await
        .map_err(map_err)?;
    let prefix = format!("{table}_p");
    Ok(rows
        .iter()
        .filter_map(|r| {
            let name: String = r.get(0);
            let day = NaiveDate::parse_from_str(name.strip_prefix(&prefix)?, "%Y%m%d").ok()?;
            Some((name, day))
        })
        .collect())
}

/// Where a partitioned table's rows of days without a partition are (`<table>_default`), or the
/// table itself when it is not partitioned.
async fn rest_table(client: &Client, table: &str) -> Result<String> {
    let default = format!("{table}_default");
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&default])
        .await
        .map_err(map_err)?
        .get(0);
    Ok(if exists { default } else { table.to_string() })
}

/// The column and bound of "older than `cut`" for a channel's table.
fn expired_when(channel: RetentionChannel, cut: NaiveDate) -> (&'static str, Bound) {
    match channel {
        RetentionChannel::Checks => ("day", Bound::Day(cut)),
        RetentionChannel::Sketches => ("day", Bound::Day(cut)),
        RetentionChannel::Events | RetentionChannel::DeadLetters => {
            ("received_at", Bound::Time(midnight(cut)))
        }
        RetentionChannel::TraceEvents => ("ts", Bound::Micros(midnight_us(cut))),
    }
}

#[derive(Debug, Clone, Copy)]
enum Bound {
    Day(NaiveDate),
    Time(DateTime<Utc>),
    Micros(i64),
}

impl Bound {
    fn param(&self) -> &(dyn ToSql + Sync) {
        match self {
            Bound::Day(d) => d,
            Bound::Time(t) => t,
            Bound::Micros(us) => us,
        }
    }
}

/// Counts (`dry_run`) or deletes the rows of `table` where `column < bound`, [`BATCH_ROWS`]-sized
/// transactions at a time.
async fn batched(
    client: &Client,
    table: &str,
    column: &str,
    bound: Bound,
    batch: usize,
    dry_run: bool,
) -> Result<u64> {
    if dry_run {
        let n: i64 = client
            .query_one(
                &format!("SELECT count(*) FROM {table} WHERE {column} < $1"),
                &[bound.param()],
            )
            .await
            .map_err(map_err)?
            .get(0);
        return Ok(n.max(0) as u64);
    }
    let sql = format!(
        "DELETE FROM {table} WHERE ctid IN (SELECT ctid FROM {table} WHERE {column} < $1 LIMIT {batch})"
    );
    let mut total = 0;
    loop {
        let n = client
            .execute(&sql, &[bound.param()])
            .await
            .map_err(map_err)?;
        total += n;
        if n < batch as u64 {
            return Ok(total);
        }
    }
}

async fn purge(
    client: &Client,
    channel: RetentionChannel,
    cut: NaiveDate,
    dry_run: bool,
) -> Result<u64> {
    let (column, bound) = expired_when(channel, cut);
    match channel {
        RetentionChannel::Checks | RetentionChannel::Events | RetentionChannel::TraceEvents => {
            let table = match channel {
                RetentionChannel::Checks => "checks",
                RetentionChannel::Events => "events",
                _ => "trace_events",
            };
            let mut removed = 0;
            for (partition, day) in day_partitions(client, table).await? {
                if day >= cut {
                    continue;
                }
                let n: i64 = client
                    .query_one(&format!("SELECT count(*) FROM {partition}"), &[])
                    .await
                    .map_err(map_err)?
                    .get(0);
                if dry_run {
                    removed += n.max(0) as u64;
                    continue;
                }
                match ddl(client, &format!("DROP TABLE {partition}"), &[]).await {
                    Ok(()) => removed += n.max(0) as u64,
                    // Left for the next run; its rows are removed below meanwhile.
                    Err(e) => {
                        tracing::info!(partition, error = %e, "expired partition not dropped now")
                    }
                }
            }
            // Rows of expired days outside a dropped partition: in the default partition (or in a
            // partition whose lock was not granted), a batch at a time. Pruning keeps the scan to
            // the partitions that can hold them.
            let rest = rest_table(client, table).await?;
            let batch = if channel == RetentionChannel::Events {
                EVENT_BATCH_ROWS
            } else {
                BATCH_ROWS
            };
            removed += batched(client, &rest, column, bound, batch, dry_run).await?;
            if rest != table && !dry_run {
                for (partition, day) in day_partitions(client, table).await? {
                    if day < cut {
                        removed +=
                            batched(client, &partition, column, bound, batch, dry_run).await?;
                    }
                }
            }
            if channel == RetentionChannel::Events && !dry_run {
                // The de-duplication keys of the removed events (not counted: not rows of the channel).
                let exists: bool = client
                    .query_one("SELECT to_regclass('event_ids') IS NOT NULL", &[])
                    .await
                    .map_err(map_err)?
                    .get(0);
                if exists {
                    batched(client, "event_ids", column, bound, BATCH_ROWS, false).await?;
                }
            }
            Ok(removed)
        }
        RetentionChannel::Sketches => {
            let a = batched(
                client,
                "perf_sketches",
                column,
                bound,
                EVENT_BATCH_ROWS,
                dry_run,
            )
            .await?;
            let b = batched(
                client,
                "perf_deltas",
                column,
                bound,
                EVENT_BATCH_ROWS,
                dry_run,
            )
            .await?;
            Ok(a + b)
        }
        RetentionChannel::DeadLetters => {
            batched(
                client,
                "dead_letters",
                column,
                bound,
                EVENT_BATCH_ROWS,
                dry_run,
            )
            .await
        }
    }
}

/// Issues whose last event has expired, with their counts and servers. The condition is repeated
/// on the deleted row itself, so an issue that a concurrent write has just given a new event (and
/// a new `last_seen`) is left alone.
async fn purge_issues(client: &Client, cut: NaiveDate, dry_run: bool) -> Result<u64> {
    let cut = midnight(cut);
    if dry_run {
        let n: i64 = client
            .query_one("SELECT count(*) FROM issues WHERE last_seen < $1", &[&cut])
            .await
            .map_err(map_err)?
            .get(0);
        return Ok(n.max(0) as u64);
    }
    let sql = format!(
        "WITH gone AS (DELETE FROM issues WHERE last_seen < $1 AND id IN \
           (SELECT id FROM issues WHERE last_seen < $1 LIMIT {EVENT_BATCH_ROWS}) RETURNING id), \
         counts AS (DELETE FROM issue_counts WHERE issue_id IN (SELECT id FROM gone)), \
         servers AS (DELETE FROM issue_servers WHERE issue_id IN (SELECT id FROM gone)) \
         SELECT count(*) FROM gone"
    );
    let mut total = 0;
    loop {
        let n: i64 = client
            .query_one(&sql, &[&cut])
            .await
            .map_err(map_err)?
            .get(0);
        total += n.max(0) as u64;
        if n < EVENT_BATCH_ROWS as i64 {
            return Ok(total);
        }
    }
}
