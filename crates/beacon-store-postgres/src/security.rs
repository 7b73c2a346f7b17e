//! The security channel on PostgreSQL: checks (upserted per server and day), bulletins, and the
//! raw queries of the reports.

use crate::errcells::{self, ErrorCellMoves};
use crate::{PgStore, map_err};
use beacon_store::security::rollup::{
    self, CellMoves, DayContribution, LatestCellKey, LatestCheck, RollupDelta,
};
use beacon_store::security::{
    self as report, CheckRecord, DayCount, FleetCell, GrowthRaw, ReleaseHealth, ServerSnapshot,
    VersionDayCount,
};
use beacon_store::{Result, StoreError, WriteOutcome};
use beacon_wire::admin::{FleetDimension, GroupCounts};
use beacon_wire::bulletin::{Bulletin, Severity};
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::{HashMap, HashSet};

/// The 14 columns of checks as arrays, `$1`…`$14`, named `n.*`.
const CHECK_ROWS: &str = "unnest($1::date[], $2::text[], $3::timestamptz[], $4::text[], \
    $5::text[], $6::bool[], $7::text[], $8::text[], $9::text[], $10::int8[], $11::int8[], \
    $12::int8[], $13::bool[], $14::int8[]) AS n (day, server_id, received_at, version, build, \
    enterprise, os, db, db_version, teams, users, activated_users, unit_tests, last_check_ms)";

/// Stores the checks that are the first of their (day, server); returns their keys.
static INSERT_CHECKS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "INSERT INTO checks (day, server_id, received_at, version, build, enterprise, os, db, \
         db_version, teams, users, activated_users, unit_tests, last_check_ms) \
         SELECT * FROM {CHECK_ROWS} ON CONFLICT (day, server_id) DO NOTHING \
         RETURNING day, server_id"
    )
});

/// Locks the stored checks the others replace (in key order) and reads what they count for.
const LOCK_REPLACED: &str = "SELECT c.day, c.server_id, c.version, c.unit_tests, c.activated_users \
    FROM checks c JOIN unnest($1::date[], $2::text[]) AS k (day, server_id) \
    ON c.day = k.day AND c.server_id = k.server_id ORDER BY c.day, c.server_id FOR UPDATE OF c";

static REPLACE_CHECKS: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "UPDATE checks c SET received_at = n.received_at, version = n.version, build = n.build, \
         enterprise = n.enterprise, os = n.os, db = n.db, db_version = n.db_version, \
         teams = n.teams, users = n.users, activated_users = n.activated_users, \
         unit_tests = n.unit_tests, last_check_ms = n.last_check_ms, \
         checks_that_day = c.checks_that_day + 1 \
         FROM {CHECK_ROWS} WHERE c.day = n.day AND c.server_id = n.server_id"
    )
});

/// Runs one of the statements over [`CHECK_ROWS`] for `rows`.
async fn with_check_rows(
    tx: &tokio_postgres::Transaction<'_>,
    sql: &str,
    rows: &[&CheckRecord],
) -> std::result::Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
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
    tx.query(
        sql,
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
    .await
}

/// Stores checks: each is the first of its (day, server) — accepted — or replaces the stored one
/// (a duplicate, which still updates the stored check: the latest check of a day wins); keeps the
/// report rollups in step ([`rollup`]). PostgreSQL refuses to touch one row twice in one statement,
/// so repeats of a key within the batch go into later statements ("rounds"), which keeps them in
/// order. A check another collector inserted meanwhile makes ours wait for its commit, then
/// replace it: counted once.
pub(crate) async fn write_checks(
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
    let mut delta = RollupDelta::default();
    for mut round in rounds {
        // One lock order for every collector: no deadlocks between concurrent batches.
        round.sort_by(|a, b| {
            (recs[*a].day(), &recs[*a].check.server_id)
                .cmp(&(recs[*b].day(), &recs[*b].check.server_id))
        });
        let rows: Vec<&CheckRecord> = round.iter().map(|i| recs[*i]).collect();
        let inserted: HashSet<(NaiveDate, String)> = with_check_rows(tx, &INSERT_CHECKS, &rows)
            .await?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let (new, replacing): (Vec<usize>, Vec<usize>) = round
            .into_iter()
            .partition(|i| inserted.contains(&(recs[*i].day(), recs[*i].check.server_id.clone())));
        for i in new {
            delta.inserted(recs[i]);
        }
        if replacing.is_empty() {
            continue;
        }
        let rows: Vec<&CheckRecord> = replacing.iter().map(|i| recs[*i]).collect();
        let days: Vec<NaiveDate> = rows.iter().map(|r| r.day()).collect();
        let ids: Vec<&str> = rows.iter().map(|r| r.check.server_id.as_str()).collect();
        let old: HashMap<(NaiveDate, String), DayContribution> = tx
            .query(LOCK_REPLACED, &[&days, &ids])
            .await?
            .iter()
            .map(|row| {
                (
                    (row.get(0), row.get(1)),
                    DayContribution {
                        day: row.get(0),
                        version: row.get(2),
                        unit_tests: row.get(3),
                        activated_users: row.get(4),
                    },
                )
            })
            .collect();
        with_check_rows(tx, &REPLACE_CHECKS, &rows).await?;
        for i in replacing {
            let r = recs[i];
            match old.get(&(r.day(), r.check.server_id.clone())) {
                Some(o) => delta.replaced(o, r),
                // Not stored, yet not inserted: cannot happen under the primary key; counted as new.
                None => delta.inserted(r),
            }
            out[i] = WriteOutcome::Duplicate;
        }
    }
    apply_rollup(tx, &delta).await?;
    Ok(out)
}

/// Applies a [`RollupDelta`] (in its key order: one lock order for every collector) in the
/// transaction that changed `checks`.
pub(crate) async fn apply_rollup(
    tx: &tokio_postgres::Transaction<'_>,
    delta: &RollupDelta,
) -> std::result::Result<(), tokio_postgres::Error> {
    let (mut days, mut versions, mut ut, mut servers, mut activated) =
        (vec![], vec![], vec![], vec![], vec![]);
    for (k, d) in delta.days() {
        days.push(k.day);
        versions.push(k.version.as_str());
        ut.push(k.unit_tests);
        servers.push(d.servers);
        activated.push(d.activated_users);
    }
    if !days.is_empty() {
        tx.execute(
            "INSERT INTO check_days AS t (day, version, unit_tests, servers, activated_users) \
             SELECT * FROM unnest($1::date[], $2::text[], $3::bool[], $4::int8[], $5::int8[]) \
             ON CONFLICT (day, version, unit_tests) DO UPDATE SET \
             servers = t.servers + excluded.servers, \
             activated_users = t.activated_users + excluded.activated_users",
            &[&days, &versions, &ut, &servers, &activated],
        )
        .await?;
        if servers.iter().any(|n| *n < 0) {
            tx.execute(
                "DELETE FROM check_days t USING unnest($1::date[], $2::text[], $3::bool[]) \
                 AS k (day, version, unit_tests) WHERE t.day = k.day AND t.version = k.version \
                 AND t.unit_tests = k.unit_tests AND t.servers <= 0",
                &[&days, &versions, &ut],
            )
            .await?;
        }
    }
    let latest: Vec<&LatestCheck> = delta.latest().collect();
    if latest.is_empty() {
        return Ok(());
    }
    let mut cells = CellMoves::default();
    let mut error_cells = ErrorCellMoves::default();
    // New servers first: a server another collector is inserting makes this wait for its commit,
    // then conflict, and it is updated below like any known server. A new server's last error
    // day is read from `error_days` (under the new-server locks: see `errcells`).
    let ids: Vec<&str> = latest
        .iter()
        .map(|l| l.snapshot.server_id.as_str())
        .collect();
    errcells::lock_new_servers(tx, &ids).await?;
    let rows: Vec<(NaiveDate, &ServerSnapshot)> =
        latest.iter().map(|l| (l.first_day, &l.snapshot)).collect();
    let inserted: HashMap<String, Option<NaiveDate>> = with_latest_rows(
        tx,
        &format!(
            "INSERT INTO server_latest (first_day, {SNAPSHOT_COLUMNS}, last_error_day) \
             SELECT n.*, (SELECT max(e.day) FROM error_days e WHERE e.server_id = n.server_id) \
             FROM {LATEST_ROWS} ON CONFLICT (server_id) DO NOTHING \
             RETURNING server_id, last_error_day"
        ),
        &rows,
    )
    .await?
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    let mut known = Vec::new();
    for l in latest {
        if let Some(last_error) = inserted.get(&l.snapshot.server_id) {
            cells.moved(None, (l.first_day, &l.snapshot));
            error_cells.inserted(&l.snapshot, *last_error);
        } else {
            known.push(l);
        }
    }
    if !known.is_empty() {
        let ids: Vec<&str> = known
            .iter()
            .map(|l| l.snapshot.server_id.as_str())
            .collect();
        let mut last_errors: HashMap<String, Option<NaiveDate>> = HashMap::new();
        let old: HashMap<String, (NaiveDate, ServerSnapshot)> = tx
            .query(
                &format!(
                    "SELECT first_day, {SNAPSHOT_COLUMNS}, last_error_day FROM server_latest \
                     WHERE server_id = ANY($1) ORDER BY server_id FOR UPDATE"
                ),
                &[&ids],
            )
            .await?
            .iter()
            .map(|r| {
                let s = snapshot_from(r, 1);
                last_errors.insert(s.server_id.clone(), r.get(12));
                (s.server_id.clone(), (r.get(0), s))
            })
            .collect();
        let merged: Vec<(NaiveDate, ServerSnapshot)> = known
            .iter()
            .map(|l| {
                let o = old.get(&l.snapshot.server_id);
                let (first, new) = rollup::merged(o, l);
                cells.moved(o.map(|(f, s)| (*f, s)), (first, &new));
                if let Some((_, was)) = o {
                    let last_error = last_errors.get(&new.server_id).copied().flatten();
                    error_cells.moved(was, &new, last_error);
                }
                (first, new)
            })
            .collect();
        let rows: Vec<(NaiveDate, &ServerSnapshot)> = merged.iter().map(|(f, s)| (*f, s)).collect();
        with_latest_rows(
            tx,
            &format!(
                "UPDATE server_latest t SET first_day = n.first_day, day = n.day, \
                 version = n.version, enterprise = n.enterprise, os = n.os, db = n.db, \
                 db_version = n.db_version, teams = n.teams, users = n.users, \
                 activated_users = n.activated_users, unit_tests = n.unit_tests \
                 FROM {LATEST_ROWS} WHERE t.server_id = n.server_id"
            ),
            &rows,
        )
        .await?;
    }
    apply_cells(tx, &cells).await?;
    errcells::apply(tx, &error_cells).await
}

/// The columns of a [`ServerSnapshot`] in `server_latest` (and `checks`), in its field order.
pub(crate) const SNAPSHOT_COLUMNS: &str = "server_id, day, version, enterprise, os, db, db_version, \
    teams, users, activated_users, unit_tests";

/// `server_latest` rows as arrays `$1`…`$12` (first day, then [`SNAPSHOT_COLUMNS`]), named `n.*`.
const LATEST_ROWS: &str = "unnest($1::date[], $2::text[], $3::date[], $4::text[], $5::bool[], \
    $6::text[], $7::text[], $8::text[], $9::int8[], $10::int8[], $11::int8[], $12::bool[]) \
    AS n (first_day, server_id, day, version, enterprise, os, db, db_version, teams, users, \
    activated_users, unit_tests)";

async fn with_latest_rows(
    tx: &tokio_postgres::Transaction<'_>,
    sql: &str,
    rows: &[(NaiveDate, &ServerSnapshot)],
) -> std::result::Result<Vec<tokio_postgres::Row>, tokio_postgres::Error> {
    let snap = |f: &dyn Fn(&ServerSnapshot) -> Option<i64>| {
        rows.iter().map(|(_, s)| f(s)).collect::<Vec<_>>()
    };
    let first: Vec<NaiveDate> = rows.iter().map(|(f, _)| *f).collect();
    let ids: Vec<&str> = rows.iter().map(|(_, s)| s.server_id.as_str()).collect();
    let day: Vec<NaiveDate> = rows.iter().map(|(_, s)| s.day).collect();
    let version: Vec<&str> = rows.iter().map(|(_, s)| s.version.as_str()).collect();
    let enterprise: Vec<bool> = rows.iter().map(|(_, s)| s.enterprise).collect();
    let os: Vec<&str> = rows.iter().map(|(_, s)| s.os.as_str()).collect();
    let db: Vec<&str> = rows.iter().map(|(_, s)| s.db.as_str()).collect();
    let dbv: Vec<Option<&str>> = rows.iter().map(|(_, s)| s.db_version.as_deref()).collect();
    let teams = snap(&|s| s.teams);
    let users = snap(&|s| s.users);
    let act = snap(&|s| s.activated_users);
    let ut: Vec<bool> = rows.iter().map(|(_, s)| s.unit_tests).collect();
    tx.query(
        sql,
        &[
            &first,
            &ids,
            &day,
            &version,
            &enterprise,
            &os,
            &db,
            &dbv,
            &teams,
            &users,
            &act,
            &ut,
        ],
    )
    .await
}

/// A [`ServerSnapshot`] from the [`SNAPSHOT_COLUMNS`] of a row, from column `at` on.
pub(crate) fn snapshot_from(r: &tokio_postgres::Row, at: usize) -> ServerSnapshot {
    ServerSnapshot {
        server_id: r.get(at),
        day: r.get(at + 1),
        version: r.get(at + 2),
        enterprise: r.get(at + 3),
        os: r.get(at + 4),
        db: r.get(at + 5),
        db_version: r.get(at + 6),
        teams: r.get(at + 7),
        users: r.get(at + 8),
        activated_users: r.get(at + 9),
        unit_tests: r.get(at + 10),
    }
}

/// Applies `latest_cells` changes (in their key order: one lock order for every collector); a cell
/// left with no server goes.
pub(crate) async fn apply_cells(
    tx: &tokio_postgres::Transaction<'_>,
    cells: &CellMoves,
) -> std::result::Result<(), tokio_postgres::Error> {
    let firsts: Vec<_> = cells.first_changes().collect();
    if !firsts.is_empty() {
        let day: Vec<NaiveDate> = firsts.iter().map(|((d, _), _)| *d).collect();
        let ut: Vec<bool> = firsts.iter().map(|((_, u), _)| *u).collect();
        let n: Vec<i64> = firsts.iter().map(|(_, n)| **n).collect();
        tx.execute(
            "INSERT INTO first_days AS t (day, unit_tests, servers) \
             SELECT * FROM unnest($1::date[], $2::bool[], $3::int8[]) \
             ON CONFLICT (day, unit_tests) DO UPDATE SET servers = t.servers + excluded.servers",
            &[&day, &ut, &n],
        )
        .await?;
        if n.iter().any(|n| *n < 0) {
            tx.execute(
                "DELETE FROM first_days t USING unnest($1::date[], $2::bool[]) AS k (day, unit_tests) \
                 WHERE t.day = k.day AND t.unit_tests = k.unit_tests AND t.servers <= 0",
                &[&day, &ut],
            )
            .await?;
        }
    }
    let changes: Vec<_> = cells.changes().collect();
    if changes.is_empty() {
        return Ok(());
    }
    let day: Vec<NaiveDate> = changes.iter().map(|(k, _)| k.day).collect();
    let version: Vec<&str> = changes.iter().map(|(k, _)| k.version.as_str()).collect();
    let enterprise: Vec<bool> = changes.iter().map(|(k, _)| k.enterprise).collect();
    let os: Vec<&str> = changes.iter().map(|(k, _)| k.os.as_str()).collect();
    let db: Vec<&str> = changes.iter().map(|(k, _)| k.db.as_str()).collect();
    let dbv: Vec<&str> = changes.iter().map(|(k, _)| k.stored_db_version()).collect();
    let bucket = |f: &dyn Fn(&LatestCellKey) -> Option<i64>| {
        changes
            .iter()
            .map(|(k, _)| LatestCellKey::stored_bucket(f(k)))
            .collect::<Vec<i64>>()
    };
    let ub = bucket(&|k| k.users_bucket);
    let ab = bucket(&|k| k.activated_users_bucket);
    let tb = bucket(&|k| k.teams_bucket);
    let ut: Vec<bool> = changes.iter().map(|(k, _)| k.unit_tests).collect();
    let servers: Vec<i64> = changes.iter().map(|(_, d)| d.servers).collect();
    let users: Vec<i64> = changes.iter().map(|(_, d)| d.users).collect();
    let act: Vec<i64> = changes.iter().map(|(_, d)| d.activated_users).collect();
    let teams: Vec<i64> = changes.iter().map(|(_, d)| d.teams).collect();
    const KEY: &str = "day, version, enterprise, os, db, db_version, users_bucket, \
        activated_users_bucket, teams_bucket, unit_tests";
    const KEY_ARRAYS: &str = "$1::date[], $2::text[], $3::bool[], $4::text[], $5::text[], \
        $6::text[], $7::int8[], $8::int8[], $9::int8[], $10::bool[]";
    tx.execute(
        &format!(
            "INSERT INTO latest_cells AS t ({KEY}, servers, users, activated_users, teams) \
             SELECT * FROM unnest({KEY_ARRAYS}, $11::int8[], $12::int8[], $13::int8[], $14::int8[]) \
             ON CONFLICT ({KEY}) DO UPDATE SET servers = t.servers + excluded.servers, \
             users = t.users + excluded.users, \
             activated_users = t.activated_users + excluded.activated_users, \
             teams = t.teams + excluded.teams"
        ),
        &[
            &day, &version, &enterprise, &os, &db, &dbv, &ub, &ab, &tb, &ut, &servers, &users, &act,
            &teams,
        ],
    )
    .await?;
    if servers.iter().any(|n| *n < 0) {
        tx.execute(
            &format!(
                "DELETE FROM latest_cells t USING unnest({KEY_ARRAYS}) AS k ({KEY}) \
                 WHERE (t.day, t.version, t.enterprise, t.os, t.db, t.db_version, t.users_bucket, \
                 t.activated_users_bucket, t.teams_bucket, t.unit_tests) = \
                 (k.day, k.version, k.enterprise, k.os, k.db, k.db_version, k.users_bucket, \
                 k.activated_users_bucket, k.teams_bucket, k.unit_tests) AND t.servers <= 0"
            ),
            &[
                &day,
                &version,
                &enterprise,
                &os,
                &db,
                &dbv,
                &ub,
                &ab,
                &tb,
                &ut,
            ],
        )
        .await?;
    }
    Ok(())
}

const BULLETIN_COLUMNS: &str =
    "id, title, severity, affected, fixed_in, body, published_at, retracted_at";

fn bulletin_from_row(row: &tokio_postgres::Row) -> Result<Bulletin> {
    let severity: String = row.get(2);
    Ok(Bulletin {
        id: row.get(0),
        title: row.get(1),
        severity: severity
            .parse::<Severity>()
            .map_err(|e| StoreError::Corrupt(format!("bulletin severity: {e}")))?,
        affected: row.get(3),
        fixed_in: row.get(4),
        body: row.get(5),
        published_at: row.get(6),
        retracted_at: row.get(7),
    })
}

fn day_counts(rows: Vec<tokio_postgres::Row>) -> Vec<DayCount> {
    rows.iter()
        .map(|r| DayCount {
            day: r.get(0),
            count: r.get::<_, i64>(1) as u64,
        })
        .collect()
}

pub(crate) async fn count_checks(s: &PgStore) -> Result<u64> {
    let row = s
        .client()
        .await?
        .query_one("SELECT count(*) FROM checks", &[])
        .await
        .map_err(map_err)?;
    Ok(row.get::<_, i64>(0) as u64)
}

pub(crate) async fn insert_bulletin(s: &PgStore, b: &Bulletin) -> Result<()> {
    s.client()
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

pub(crate) async fn bulletins(s: &PgStore) -> Result<Vec<Bulletin>> {
    s.client()
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

pub(crate) async fn bulletin(s: &PgStore, id: &str) -> Result<Option<Bulletin>> {
    s.client()
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

pub(crate) async fn retract_bulletin(s: &PgStore, id: &str, at: DateTime<Utc>) -> Result<Bulletin> {
    let row = s
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

pub(crate) async fn latest_per_server(
    s: &PgStore,
    from: NaiveDate,
    to: NaiveDate,
    include_test: bool,
) -> Result<Vec<ServerSnapshot>> {
    let rows = s
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

/// Whether `server_latest` answers "each server's latest check in `[from, to]`": when no stored check
/// is newer than `to`, a server's latest check in the range is its latest check.
async fn latest_covers(client: &tokio_postgres::Client, to: NaiveDate) -> Result<bool> {
    Ok(client
        .query_one(
            "SELECT coalesce(max(day) <= $1, true) FROM server_latest",
            &[&to],
        )
        .await
        .map_err(map_err)?
        .get(0))
}

/// Whether no server erred after `to`: then a server's last error day is in a range ending at
/// `to` exactly when it erred in the range.
async fn errors_covered(client: &tokio_postgres::Client, to: NaiveDate) -> Result<bool> {
    Ok(client
        .query_one(
            "SELECT coalesce(max(day) <= $1, true) FROM error_days",
            &[&to],
        )
        .await
        .map_err(map_err)?
        .get(0))
}

/// Each server's latest check in days `$1..=$2` as rows aliased `c` (test installs left out unless
/// `$3`): from `server_latest` when it covers the range, else from the raw checks.
fn latest_in_range(covered: bool) -> &'static str {
    if covered {
        "FROM server_latest c WHERE c.day BETWEEN $1 AND $2 AND ($3 OR NOT c.unit_tests)"
    } else {
        "FROM (SELECT DISTINCT ON (server_id) * FROM checks WHERE day BETWEEN $1 AND $2 \
         ORDER BY server_id, day DESC) c WHERE $3 OR NOT c.unit_tests"
    }
}

pub(crate) async fn fleet_cells(
    s: &PgStore,
    from: NaiveDate,
    to: NaiveDate,
    by: FleetDimension,
    include_test: bool,
) -> Result<Vec<FleetCell>> {
    let (select, group) = report::fleet_cells_sql(by);
    let client = s.client().await?;
    let cells = if latest_covers(&client, to).await? {
        report::latest_cells_sql(
            by,
            "day BETWEEN $1 AND $2 AND ($3 OR NOT unit_tests)",
            "chr(1)",
        )
    } else {
        format!("{select} {} {group}", latest_in_range(false))
    };
    // Sums of int8 are numeric here and the buckets int4: all back to int8 (the capped sums fit).
    let sql = format!(
        "SELECT k, ub::int8, ab::int8, tb::int8, n::int8, su::int8, sa::int8, st::int8 FROM ({cells}) \
         AS cells (k, ub, ab, tb, n, su, sa, st)"
    );
    let rows = client
        .query(sql.as_str(), &[&from, &to, &include_test])
        .await
        .map_err(map_err)?;
    Ok(rows
        .iter()
        .map(|r| FleetCell {
            key: r.get(0),
            users_bucket: r.get(1),
            activated_users_bucket: r.get(2),
            teams_bucket: r.get(3),
            counts: GroupCounts {
                servers: r.get::<_, i64>(4) as u64,
                users: r.get(5),
                activated_users: r.get(6),
                teams: r.get(7),
            },
        })
        .collect())
}

pub(crate) async fn release_health(
    s: &PgStore,
    from: NaiveDate,
    to: NaiveDate,
    include_test: bool,
) -> Result<Vec<ReleaseHealth>> {
    // The bounds are UTC midnights whatever the session's TimeZone.
    let (select, group) = report::release_health_sql(
        "($1::date::timestamp AT TIME ZONE 'UTC')",
        "(($2::date + 1)::timestamp AT TIME ZONE 'UTC')",
    );
    let client = s.client().await?;
    let rows = if latest_covers(&client, to).await? && errors_covered(&client, to).await? {
        // Servers per version from `latest_cells`; the erring ones from `error_cells`, whose last
        // error day is in the range exactly when they erred in it (no error day is after `to`).
        let filter = |t: &str| format!("{t}.day BETWEEN $1 AND $2 AND ($3 OR NOT {t}.unit_tests)");
        format!(
            "SELECT v.version, v.n, coalesce(w.n, 0) FROM \
             (SELECT c.version, sum(c.servers) AS n FROM latest_cells c WHERE {cells} \
              GROUP BY c.version HAVING sum(c.servers) > 0) v \
             LEFT JOIN (SELECT e.version, sum(e.servers) AS n FROM error_cells e WHERE {errs} \
              AND e.last_error_day BETWEEN $1 AND $2 GROUP BY e.version) w \
             ON w.version = v.version",
            cells = filter("c"),
            errs = filter("e"),
        )
    } else {
        format!("{select} {} {group}", latest_in_range(false))
    };
    let sql = format!(
        "SELECT v, n::int8, w::int8 FROM ({rows}) AS rows (v, n, w) ORDER BY v COLLATE \"C\""
    );
    let rows = client
        .query(sql.as_str(), &[&from, &to, &include_test])
        .await
        .map_err(map_err)?;
    Ok(rows
        .iter()
        .map(|r| ReleaseHealth {
            version: r.get(0),
            servers: r.get::<_, i64>(1) as u64,
            servers_with_errors: r.get::<_, i64>(2) as u64,
        })
        .collect())
}

pub(crate) async fn version_day_counts(
    s: &PgStore,
    from: NaiveDate,
    to: NaiveDate,
    include_test: bool,
) -> Result<Vec<VersionDayCount>> {
    let rows = s
        .client()
        .await?
        .query(
            "SELECT day, version, sum(servers)::int8, sum(activated_users)::int8 FROM check_days \
             WHERE day BETWEEN $1 AND $2 AND ($3 OR NOT unit_tests) \
             GROUP BY day, version HAVING sum(servers) > 0 ORDER BY day, version",
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

pub(crate) async fn growth_raw(
    s: &PgStore,
    from: NaiveDate,
    to: NaiveDate,
    last_from: NaiveDate,
    include_test: bool,
) -> Result<GrowthRaw> {
    let client = s.client().await?;
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
            "SELECT day, sum(servers)::int8 FROM check_days WHERE day BETWEEN $1 AND $2 \
             AND ($3 OR NOT unit_tests) GROUP BY day HAVING sum(servers) > 0",
            from,
        )
        .await?,
        first_seen: q(
            "SELECT day, sum(servers)::int8 FROM first_days WHERE day BETWEEN $1 AND $2 \
             AND ($3 OR NOT unit_tests) GROUP BY day HAVING sum(servers) > 0",
            from,
        )
        .await?,
        last_seen: q(
            "SELECT day, sum(servers)::int8 FROM latest_cells WHERE day BETWEEN $1 AND $2 \
             AND ($3 OR NOT unit_tests) GROUP BY day HAVING sum(servers) > 0",
            last_from,
        )
        .await?,
    })
}
