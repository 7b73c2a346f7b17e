//! The security channel on SQLite: checks (upserted per server and day), bulletins, and the raw
//! queries of the reports.

use crate::{SqliteStore, day_from, day_num, map_err, ms, run, time_from};
use beacon_store::security::{
    self as report, CheckRecord, DayCount, FleetCell, GrowthRaw, ReleaseHealth, ServerSnapshot,
    VersionDayCount,
};
use beacon_store::{Result, StoreError, WriteOutcome};
use beacon_wire::admin::{FleetDimension, GroupCounts};
use beacon_wire::bulletin::{Bulletin, Severity};
use chrono::{DateTime, NaiveDate, Utc};
use rusqlite::{Connection, OptionalExtension, params};

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
pub(crate) fn write_checks(
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
                .ok_or_else(|| StoreError::Corrupt(format!("no RETURNING row for check {id}")))?;
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
    let sql = format!(
        "{select} FROM checks c JOIN (SELECT server_id, max(day) AS day FROM checks \
         WHERE day BETWEEN ?1 AND ?2 GROUP BY server_id) m \
         ON c.server_id = m.server_id AND c.day = m.day \
         WHERE ?3 OR c.unit_tests = 0 {group}"
    );
    run(&s.reader, move |c| {
        let mut stmt = c.prepare_cached(&sql).map_err(map_err)?;
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
fn release_health_query() -> String {
    let (select, group) = report::release_health_sql("?4", "?5");
    format!(
        "{select} FROM checks c JOIN (SELECT server_id, max(day) AS day FROM checks \
         WHERE day BETWEEN ?1 AND ?2 GROUP BY server_id) m \
         ON c.server_id = m.server_id AND c.day = m.day \
         WHERE ?3 OR c.unit_tests = 0 {group} ORDER BY c.version"
    )
}

pub(crate) async fn release_health(
    s: &SqliteStore,
    from: NaiveDate,
    to: NaiveDate,
    include_test: bool,
) -> Result<Vec<ReleaseHealth>> {
    const DAY_MS: i64 = 86_400_000;
    let sql = release_health_query();
    // Events' received_at is in unix ms: [first ms of `from`, first ms of the day after `to`).
    let (lower, upper) = (day_num(from) * DAY_MS, (day_num(to) + 1) * DAY_MS);
    run(&s.reader, move |c| {
        let mut stmt = c.prepare_cached(&sql).map_err(map_err)?;
        let rows = stmt
            .query_map(
                params![day_num(from), day_num(to), include_test, lower, upper],
                |r| {
                    Ok(ReleaseHealth {
                        version: r.get(0)?,
                        servers: r.get::<_, i64>(1)? as u64,
                        servers_with_errors: r.get::<_, i64>(2)? as u64,
                    })
                },
            )
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
    let sql = format!(
        "SELECT day, version, count(*), coalesce(sum({}), 0) FROM checks \
         WHERE day BETWEEN ?1 AND ?2 AND (?3 OR unit_tests = 0) \
         GROUP BY day, version ORDER BY day, version",
        report::capped_sql("activated_users")
    );
    run(&s.reader, move |c| {
        let mut stmt = c.prepare_cached(&sql).map_err(map_err)?;
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
    run(&s.writer, move |c| {
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

#[cfg(test)]
mod tests {
    /// Release health probes each server's events through `events_by_server` (an index seek, not a
    /// scan of the events table), and finds each server's latest check by primary key.
    #[test]
    fn release_health_seeks_the_events_index() {
        let mut conn = rusqlite::Connection::open_in_memory().unwrap();
        crate::migrations::apply(&mut conn).unwrap();
        let mut stmt = conn
            .prepare(&format!(
                "EXPLAIN QUERY PLAN {}",
                super::release_health_query()
            ))
            .unwrap();
        let plan: Vec<String> = stmt
            .query_map(rusqlite::params![0, 1, false, 0, 1], |r| r.get(3))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        let events: Vec<_> = plan.iter().filter(|l| l.contains(" e ")).collect();
        assert!(
            !events.is_empty()
                && events.iter().all(|l| {
                    l.starts_with("SEARCH e USING COVERING INDEX events_by_server (server_id=?")
                }),
            "{plan:#?}"
        );
    }
}
