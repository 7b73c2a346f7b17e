//! The security channel on PostgreSQL: checks (upserted per server and day), bulletins, and the
//! raw queries of the reports.

use crate::{PgStore, map_err};
use beacon_store::security::{
    self as report, CheckRecord, DayCount, FleetCell, GrowthRaw, ReleaseHealth, ServerSnapshot,
    VersionDayCount,
};
use beacon_store::{Result, StoreError, WriteOutcome};
use beacon_wire::admin::{FleetDimension, GroupCounts};
use beacon_wire::bulletin::{Bulletin, Severity};
use chrono::{DateTime, NaiveDate, Utc};
use std::collections::HashMap;

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

/// Brings the `servers` rollup up to date with `checks` (see the SQLite backend: same rule).
async fn roll_up_servers(s: &PgStore) -> Result<()> {
    let mut client = s.client().await?;
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

pub(crate) async fn fleet_cells(
    s: &PgStore,
    from: NaiveDate,
    to: NaiveDate,
    by: FleetDimension,
    include_test: bool,
) -> Result<Vec<FleetCell>> {
    let (select, group) = report::fleet_cells_sql(by);
    // Sums of int8 are numeric here and the buckets int4: both back to int8 (the capped sums fit).
    let sql = format!(
        "SELECT k, ub::int8, ab::int8, tb::int8, n, su::int8, sa::int8, st::int8 FROM ({select} \
         FROM (SELECT DISTINCT ON (server_id) * FROM checks WHERE day BETWEEN $1 AND $2 \
         ORDER BY server_id, day DESC) c WHERE $3 OR NOT c.unit_tests {group}) \
         AS cells (k, ub, ab, tb, n, su, sa, st)"
    );
    let rows = s
        .client()
        .await?
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
    let sql = format!(
        "SELECT v, n, w::int8 FROM ({select} \
         FROM (SELECT DISTINCT ON (server_id) server_id, version, unit_tests FROM checks \
         WHERE day BETWEEN $1 AND $2 ORDER BY server_id, day DESC) c \
         WHERE $3 OR NOT c.unit_tests {group}) AS rows (v, n, w) ORDER BY v COLLATE \"C\""
    );
    let rows = s
        .client()
        .await?
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
            format!(
                "SELECT day, version, count(*), coalesce(sum({}), 0)::int8 FROM checks \
                 WHERE day BETWEEN $1 AND $2 AND ($3 OR NOT unit_tests) \
                 GROUP BY day, version ORDER BY day, version",
                report::capped_sql("activated_users")
            )
            .as_str(),
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
    roll_up_servers(s).await?;
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
