//! The security channel on SQLite: checks (upserted per server and day), bulletins, and the raw
//! queries of the reports.

use crate::{SqliteStore, day_from, day_num, map_err, ms, run, time_from};
use beacon_store::security::rollup::{
    self, CellMoves, DayContribution, LatestCellKey, RollupDelta,
};
use beacon_store::security::{
    self as report, CheckRecord, DayCount, FleetCell, GrowthRaw, ReleaseHealth, ServerSnapshot,
    VersionDayCount,
};
use beacon_store::{Result, StoreError, WriteOutcome};
use beacon_wire::admin::{FleetDimension, GroupCounts};
use beacon_wire::bulletin::{Bulletin, Severity};
use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::HashSet;

/// Rows per multi-row `INSERT` (14 parameters each, well under SQLite's limit of 32766).
const CHECK_CHUNK: usize = 64;

const CHECK_COLUMNS: usize = 14;

/// `INSERT … VALUES (…), (…) … ON CONFLICT DO NOTHING RETURNING` for 1 to `CHECK_CHUNK` rows: the
/// rows it returns are the first of their (day, server); the others replace a stored check.
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
                 ON CONFLICT (day, server_id) DO NOTHING RETURNING day, server_id",
                values.join(", ")
            )
        })
        .collect()
});

/// A check's 14 columns in the order of [`INSERT_CHECKS`] and [`REPLACE_CHECK`].
fn check_params<'a>(
    rec: &'a CheckRecord,
    day: &'a i64,
    derived: &'a (i64, String),
) -> [&'a dyn rusqlite::ToSql; CHECK_COLUMNS] {
    let c = &rec.check;
    [
        &c.server_id,
        day,
        &derived.0,
        &derived.1,
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
    ]
}

const REPLACE_CHECK: &str = "UPDATE checks SET received_at = ?3, version = ?4, build = ?5, \
    enterprise = ?6, os = ?7, db = ?8, db_version = ?9, teams = ?10, users = ?11, \
    activated_users = ?12, unit_tests = ?13, last_check_ms = ?14, \
    checks_that_day = checks_that_day + 1 WHERE server_id = ?1 AND day = ?2";

/// Stores checks, many rows per statement, and tells for each whether it was the first of its
/// (day, server) or replaced the stored one (a duplicate, which still updates the stored check: the
/// latest check of a day wins); keeps the report rollups in step ([`rollup`]).
pub(crate) fn write_checks(
    tx: &rusqlite::Transaction<'_>,
    recs: &[&CheckRecord],
) -> Result<Vec<WriteOutcome>> {
    let mut out = Vec::with_capacity(recs.len());
    let mut delta = RollupDelta::default();
    for chunk in recs.chunks(CHECK_CHUNK) {
        let days: Vec<i64> = chunk.iter().map(|r| day_num(r.day())).collect();
        let derived: Vec<(i64, String)> = chunk
            .iter()
            .map(|r| (ms(r.received_at), r.check.version.to_string()))
            .collect();
        let mut params: Vec<&dyn rusqlite::ToSql> = Vec::with_capacity(chunk.len() * CHECK_COLUMNS);
        for ((rec, day), d) in chunk.iter().zip(&days).zip(&derived) {
            params.extend_from_slice(&check_params(rec, day, d));
        }
        let mut stmt = tx
            .prepare_cached(&INSERT_CHECKS[chunk.len() - 1])
            .map_err(map_err)?;
        let mut inserted: HashSet<(i64, String)> = stmt
            .query_map(params.as_slice(), |r| Ok((r.get(0)?, r.get(1)?)))
            .map_err(map_err)?
            .collect::<rusqlite::Result<_>>()
            .map_err(map_err)?;
        // Rows are inserted in order: of repeats within the chunk, the first was inserted.
        for ((rec, day), d) in chunk.iter().zip(&days).zip(&derived) {
            if inserted.remove(&(*day, rec.check.server_id.clone())) {
                delta.inserted(rec);
                out.push(WriteOutcome::Accepted);
                continue;
            }
            let old = tx
                .prepare_cached(
                    "SELECT version, unit_tests, activated_users FROM checks \
                     WHERE day = ?1 AND server_id = ?2",
                )
                .map_err(map_err)?
                .query_row(params![day, rec.check.server_id], |r| {
                    Ok(DayContribution {
                        day: rec.day(),
                        version: r.get(0)?,
                        unit_tests: r.get(1)?,
                        activated_users: r.get(2)?,
                    })
                })
                .map_err(map_err)?;
            tx.prepare_cached(REPLACE_CHECK)
                .map_err(map_err)?
                .execute(check_params(rec, day, d).as_slice())
                .map_err(map_err)?;
            delta.replaced(&old, rec);
            out.push(WriteOutcome::Duplicate);
        }
    }
    apply_rollup(tx, &delta)?;
    Ok(out)
}

/// Applies a [`RollupDelta`] (in its key order) in the transaction that changed `checks`.
pub(crate) fn apply_rollup(tx: &rusqlite::Transaction<'_>, delta: &RollupDelta) -> Result<()> {
    for (k, d) in delta.days() {
        tx.prepare_cached(
            "INSERT INTO check_days (day, version, unit_tests, servers, activated_users) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (day, version, unit_tests) DO UPDATE SET \
             servers = servers + excluded.servers, \
             activated_users = activated_users + excluded.activated_users",
        )
        .map_err(map_err)?
        .execute(params![
            day_num(k.day),
            k.version,
            k.unit_tests,
            d.servers,
            d.activated_users
        ])
        .map_err(map_err)?;
        if d.servers < 0 {
            tx.prepare_cached(
                "DELETE FROM check_days WHERE day = ?1 AND version = ?2 AND unit_tests = ?3 \
                 AND servers <= 0",
            )
            .map_err(map_err)?
            .execute(params![day_num(k.day), k.version, k.unit_tests])
            .map_err(map_err)?;
        }
    }
    let mut cells = CellMoves::default();
    for l in delta.latest() {
        let old = tx
            .prepare_cached(&format!(
                "SELECT first_day, {SNAPSHOT_COLUMNS} FROM server_latest WHERE server_id = ?1"
            ))
            .map_err(map_err)?
            .query_row([&l.snapshot.server_id], |r| {
                Ok((day_from(r.get(0)?), snapshot_from(r, 1)?))
            })
            .optional()
            .map_err(map_err)?;
        let (first_day, new) = rollup::merged(old.as_ref(), l);
        cells.moved(old.as_ref().map(|(f, s)| (*f, s)), (first_day, &new));
        tx.prepare_cached(&format!(
            "INSERT OR REPLACE INTO server_latest (first_day, {SNAPSHOT_COLUMNS}) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
        ))
        .map_err(map_err)?
        .execute(params![
            day_num(first_day),
            new.server_id,
            day_num(new.day),
            new.version,
            new.enterprise,
            new.os,
            new.db,
            new.db_version,
            new.teams,
            new.users,
            new.activated_users,
            new.unit_tests
        ])
        .map_err(map_err)?;
    }
    apply_cells(tx, &cells)
}

/// The columns of a [`ServerSnapshot`] in `server_latest` (and `checks`), in its field order.
pub(crate) const SNAPSHOT_COLUMNS: &str = "server_id, day, version, enterprise, os, db, db_version, \
    teams, users, activated_users, unit_tests";

/// A [`ServerSnapshot`] from the [`SNAPSHOT_COLUMNS`] of a row, from column `at` on.
pub(crate) fn snapshot_from(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<ServerSnapshot> {
    Ok(ServerSnapshot {
        server_id: r.get(at)?,
        day: day_from(r.get(at + 1)?),
        version: r.get(at + 2)?,
        enterprise: r.get(at + 3)?,
        os: r.get(at + 4)?,
        db: r.get(at + 5)?,
        db_version: r.get(at + 6)?,
        teams: r.get(at + 7)?,
        users: r.get(at + 8)?,
        activated_users: r.get(at + 9)?,
        unit_tests: r.get(at + 10)?,
    })
}

/// Applies `first_days` and `latest_cells` changes (in their key order); a row left with no server
/// goes.
pub(crate) fn apply_cells(tx: &rusqlite::Transaction<'_>, cells: &CellMoves) -> Result<()> {
    for ((day, ut), n) in cells.first_changes() {
        tx.prepare_cached(
            "INSERT INTO first_days (day, unit_tests, servers) VALUES (?1, ?2, ?3) \
             ON CONFLICT (day, unit_tests) DO UPDATE SET servers = servers + excluded.servers",
        )
        .map_err(map_err)?
        .execute(params![day_num(*day), ut, n])
        .map_err(map_err)?;
        if *n < 0 {
            tx.prepare_cached(
                "DELETE FROM first_days WHERE day = ?1 AND unit_tests = ?2 AND servers <= 0",
            )
            .map_err(map_err)?
            .execute(params![day_num(*day), ut])
            .map_err(map_err)?;
        }
    }
    const KEY: &str = "day, version, enterprise, os, db, db_version, users_bucket, \
        activated_users_bucket, teams_bucket, unit_tests";
    for (k, d) in cells.changes() {
        let day = day_num(k.day);
        let buckets = [k.users_bucket, k.activated_users_bucket, k.teams_bucket]
            .map(LatestCellKey::stored_bucket);
        let key: [&dyn rusqlite::ToSql; 10] = [
            &day,
            &k.version,
            &k.enterprise,
            &k.os,
            &k.db,
            &k.stored_db_version(),
            &buckets[0],
            &buckets[1],
            &buckets[2],
            &k.unit_tests,
        ];
        let mut values: Vec<&dyn rusqlite::ToSql> = key.to_vec();
        values.extend_from_slice(&[&d.servers, &d.users, &d.activated_users, &d.teams]);
        tx.prepare_cached(&format!(
            "INSERT INTO latest_cells ({KEY}, servers, users, activated_users, teams) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14) \
             ON CONFLICT ({KEY}) DO UPDATE SET servers = servers + excluded.servers, \
             users = users + excluded.users, \
             activated_users = activated_users + excluded.activated_users, \
             teams = teams + excluded.teams"
        ))
        .map_err(map_err)?
        .execute(values.as_slice())
        .map_err(map_err)?;
        if d.servers < 0 {
            tx.prepare_cached(&format!(
                "DELETE FROM latest_cells WHERE ({KEY}) = \
                 (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10) AND servers <= 0"
            ))
            .map_err(map_err)?
            .execute(key.as_slice())
            .map_err(map_err)?;
        }
    }
    Ok(())
}

/// Whether `server_latest` answers "each server's latest check in `[from, to]`": when no stored check
/// is newer than `to`, a server's latest check in the range is its latest check.
fn latest_covers(c: &Connection, to: i64) -> Result<bool> {
    c.query_row(
        "SELECT coalesce(max(day) <= ?1, 1) FROM server_latest",
        [to],
        |r| r.get(0),
    )
    .map_err(map_err)
}

/// Each server's latest check in days `?1..=?2` (as rows aliased `c`), test installs left out unless
/// `?3`: from `server_latest` when it covers the range, else from the raw checks.
fn latest_in_range(covered: bool) -> &'static str {
    if covered {
        "FROM server_latest c WHERE c.day BETWEEN ?1 AND ?2 AND (?3 OR c.unit_tests = 0)"
    } else {
        "FROM checks c JOIN (SELECT server_id, max(day) AS day FROM checks \
         WHERE day BETWEEN ?1 AND ?2 GROUP BY server_id) m \
         ON c.server_id = m.server_id AND c.day = m.day \
         WHERE ?3 OR c.unit_tests = 0"
    }
}

const BULLETIN_COLUMNS: &str =
    "id, title, severity, affected, fixed_in, body, published_at, retracted_at";

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

pub(crate) async fn count_checks(s: &SqliteStore) -> Result<u64> {
    run(&s.reader, |c| {
        c.query_row("SELECT count(*) FROM checks", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(map_err)
    })
    .await
}

pub(crate) async fn insert_bulletin(s: &SqliteStore, b: &Bulletin) -> Result<()> {
    let b = b.clone();
    run(&s.writer, move |c| {
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

pub(crate) async fn bulletins(s: &SqliteStore) -> Result<Vec<Bulletin>> {
    run(&s.lookup, |c| {
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

pub(crate) async fn bulletin(s: &SqliteStore, id: &str) -> Result<Option<Bulletin>> {
    let id = id.to_string();
    run(&s.lookup, move |c| {
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

pub(crate) async fn retract_bulletin(
    s: &SqliteStore,
    id: &str,
    at: DateTime<Utc>,
) -> Result<Bulletin> {
    let id = id.to_string();
    run(&s.writer, move |c| {
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

pub(crate) async fn latest_per_server(
    s: &SqliteStore,
    from: NaiveDate,
    to: NaiveDate,
    include_test: bool,
) -> Result<Vec<ServerSnapshot>> {
    run(&s.reader, move |c| {
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

pub(crate) async fn fleet_cells(
    s: &SqliteStore,
    from: NaiveDate,
    to: NaiveDate,
    by: FleetDimension,
    include_test: bool,
) -> Result<Vec<FleetCell>> {
    let (select, group) = report::fleet_cells_sql(by);
    run(&s.reader, move |c| {
        let tx = c.transaction().map_err(map_err)?;
        let sql = if latest_covers(&tx, day_num(to))? {
            report::latest_cells_sql(
                by,
                "day BETWEEN ?1 AND ?2 AND (?3 OR unit_tests = 0)",
                "char(1)",
            )
        } else {
            format!("{select} {} {group}", latest_in_range(false))
        };
        let mut stmt = tx.prepare_cached(&sql).map_err(map_err)?;
        let rows = stmt
            .query_map(params![day_num(from), day_num(to), include_test], |r| {
                Ok(FleetCell {
                    key: r.get(0)?,
                    users_bucket: r.get(1)?,
                    activated_users_bucket: r.get(2)?,
                    teams_bucket: r.get(3)?,
                    counts: GroupCounts {
                        servers: r.get::<_, i64>(4)? as u64,
                        users: r.get(5)?,
                        activated_users: r.get(6)?,
                        teams: r.get(7)?,
                    },
                })
            })
            .map_err(map_err)?;
        rows.collect::<rusqlite::Result<_>>().map_err(map_err)
    })
    .await
}

/// Parameters: first and last day, include_test, and the events' bounds in unix ms.
fn release_health_query(covered: bool) -> String {
    if covered {
        let filter = |t: &str| format!("{t}.day BETWEEN ?1 AND ?2 AND (?3 OR {t}.unit_tests = 0)");
        format!(
            "{} ORDER BY v.version",
            // The events' server ids straight from `events_by_server` (server id first: no sort).
            report::release_health_latest_sql(
                &filter,
                "SELECT e.server_id FROM events e WHERE e.server_id IS NOT NULL \
                 AND e.received_at >= ?4 AND e.received_at < ?5",
            )
        )
    } else {
        let (select, group) = report::release_health_sql("?4", "?5");
        format!(
            "{select} {} {group} ORDER BY c.version",
            latest_in_range(false)
        )
    }
}

pub(crate) async fn release_health(
    s: &SqliteStore,
    from: NaiveDate,
    to: NaiveDate,
    include_test: bool,
) -> Result<Vec<ReleaseHealth>> {
    const DAY_MS: i64 = 86_400_000;
    // Events' received_at is in unix ms: [first ms of `from`, first ms of the day after `to`).
    let (lower, upper) = (day_num(from) * DAY_MS, (day_num(to) + 1) * DAY_MS);
    run(&s.reader, move |c| {
        let tx = c.transaction().map_err(map_err)?;
        let sql = release_health_query(latest_covers(&tx, day_num(to))?);
        let mut stmt = tx.prepare_cached(&sql).map_err(map_err)?;
        let (first, last) = (day_num(from), day_num(to));
        let all: [&dyn rusqlite::ToSql; 5] = [&first, &last, &include_test, &lower, &upper];
        let used = stmt.parameter_count();
        let rows = stmt
            .query_map(&all[..used], |r| {
                Ok(ReleaseHealth {
                    version: r.get(0)?,
                    servers: r.get::<_, i64>(1)? as u64,
                    servers_with_errors: r.get::<_, i64>(2)? as u64,
                })
            })
            .map_err(map_err)?;
        rows.collect::<rusqlite::Result<_>>().map_err(map_err)
    })
    .await
}

pub(crate) async fn version_day_counts(
    s: &SqliteStore,
    from: NaiveDate,
    to: NaiveDate,
    include_test: bool,
) -> Result<Vec<VersionDayCount>> {
    run(&s.reader, move |c| {
        let mut stmt = c
            .prepare_cached(
                "SELECT day, version, sum(servers), sum(activated_users) FROM check_days \
                 WHERE day BETWEEN ?1 AND ?2 AND (?3 OR unit_tests = 0) \
                 GROUP BY day, version HAVING sum(servers) > 0 ORDER BY day, version",
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

pub(crate) async fn growth_raw(
    s: &SqliteStore,
    from: NaiveDate,
    to: NaiveDate,
    last_from: NaiveDate,
    include_test: bool,
) -> Result<GrowthRaw> {
    run(&s.reader, move |c| {
        let tx = c.transaction().map_err(map_err)?;
        Ok(GrowthRaw {
            servers: day_counts(
                &tx,
                "SELECT day, sum(servers) FROM check_days WHERE day BETWEEN ?1 AND ?2 \
                 AND (?3 OR unit_tests = 0) GROUP BY day HAVING sum(servers) > 0",
                from,
                to,
                include_test,
            )?,
            first_seen: day_counts(
                &tx,
                "SELECT day, sum(servers) FROM first_days WHERE day BETWEEN ?1 AND ?2 \
                 AND (?3 OR unit_tests = 0) GROUP BY day HAVING sum(servers) > 0",
                from,
                to,
                include_test,
            )?,
            last_seen: day_counts(
                &tx,
                "SELECT day, sum(servers) FROM latest_cells WHERE day BETWEEN ?1 AND ?2 \
                 AND (?3 OR unit_tests = 0) GROUP BY day HAVING sum(servers) > 0",
                last_from,
                to,
                include_test,
            )?,
        })
    })
    .await
}

#[cfg(test)]
mod tests {
    fn plan(covered: bool) -> Vec<String> {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        crate::migrations::apply(&mut conn).unwrap();
        let mut stmt = conn
            .prepare(&format!(
                "EXPLAIN QUERY PLAN {}",
                super::release_health_query(covered)
            ))
            .unwrap();
        let all = rusqlite::params![0, 1, false, 0, 1];
        let used = stmt.parameter_count();
        stmt.query_map(&all[..used], |r| r.get(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap()
    }

    /// Over the raw checks, release health probes each server's events through `events_by_server`
    /// (an index seek, not a scan of the events table).
    #[test]
    fn release_health_seeks_the_events_index() {
        let plan = plan(false);
        let events: Vec<_> = plan.iter().filter(|l| l.contains(" e ")).collect();
        assert!(
            !events.is_empty()
                && events.iter().all(|l| {
                    l.starts_with("SEARCH e USING COVERING INDEX events_by_server (server_id=?")
                }),
            "{plan:#?}"
        );
    }

    /// Over the rollups, it reads the range's erring servers from the `events_by_server` index alone
    /// and looks each one up in `server_latest` by key: no table is scanned.
    #[test]
    fn release_health_over_the_rollups_scans_no_table() {
        let plan = plan(true);
        assert!(
            plan.iter()
                .any(|l| l.starts_with("SEARCH e USING COVERING INDEX events_by_server"))
                && plan
                    .iter()
                    .any(|l| l == "SEARCH l USING PRIMARY KEY (server_id=?)")
                && !plan.iter().any(|l| l.starts_with("SCAN e")
                    || l.starts_with("SCAN l")
                    || l.starts_with("SCAN c")),
            "{plan:#?}"
        );
    }
}
